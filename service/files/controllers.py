"""Downloads of stored files through the short-lived signed URLs Switchboard hands out (``/files/{id}``)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter

from service.files import services
from service.files.store import content_disposition


class FileController(Controller):
    """Anyone holding a valid signed URL gets the bytes until it expires; an expired or altered one is 403."""

    path = "/files"
    tags = ["Files"]

    @get("/{attachment_id:str}", operation_id="downloadFile", summary="Download an attachment (signed URL)")
    async def download(
        self,
        attachment_id: FromPath[str],
        request: Request[Any, Any, Any],
        expires: Annotated[str | None, QueryParameter(max_length=20, description="Unix time the URL ends")] = None,
        signature: Annotated[str | None, QueryParameter(max_length=100)] = None,
    ) -> Response[bytes]:
        """The file's bytes, as their sniffed type; shown inline, never run as a page."""
        # The app's engine and file store (read here, not through service.deps, which imports this package).
        state = request.app.state
        row, data = await services.download(state.engine, state.files, attachment_id, expires, signature)
        media_type = f"{row.mime_type}; charset=utf-8" if row.mime_type.startswith("text/") else row.mime_type
        return Response(
            data,
            media_type=media_type,
            headers={
                "Content-Disposition": content_disposition(row.filename),
                "X-Content-Type-Options": "nosniff",
                # A file opened directly is a document of our origin: it may run nothing.
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, max-age=300",
            },
        )
