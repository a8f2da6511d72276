"""Attachments: the file store, signed URLs, content sniffing and the upload rules."""
