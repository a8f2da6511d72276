-- POST /pocketping/message as the visitor, round-robin over pre-created sessions.
--   wrk -t THREADS ... -s bench/wrk/message.lua <url> -- <file with one session id per line> THREADS
-- Every request is built once in init(); each thread starts at its own offset in the list.
-- done() prints one JSON line (prefixed "WRK_JSON ") that bench/ingest.py reads.

local thread_count = 0

function setup(thread)
   thread:set("index", thread_count)
   thread_count = thread_count + 1
end

local requests = {}
local next_request = 1

function init(args)
   local headers = { ["Content-Type"] = "application/json" }
   for id in io.lines(args[1]) do
      local body = '{"sessionId":"' .. id .. '","content":"Hello, I need help with my order #4711.","sender":"visitor"}'
      requests[#requests + 1] = wrk.format("POST", "/pocketping/message", headers, body)
   end
   local threads = tonumber(args[2]) or 1
   next_request = math.floor(index * #requests / threads) + 1
end

function request()
   local req = requests[next_request]
   next_request = next_request % #requests + 1
   return req
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
         .. '"p50_us":%d,"p99_us":%d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
