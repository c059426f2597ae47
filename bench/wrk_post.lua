-- wrk script of bench/serve.sh: POSTs realistic bodies, one thread (-t1).
--
-- WRK_MODE=vigil: POST /v1/events with WRK_KEY. Bodies are the scored events
--   of a simulated stream (WRK_BODIES: serve_warmup.py's templates.tsv,
--   "before id<TAB>between id and time<TAB>after time"), in order. Request n
--   (counted from WRK_START) is template n mod T with the event id
--   e<100000000000 + n> (12 digits, the schema's ^e[0-9]{12}$) and the time
--   WRK_START_MS + n * WRK_PERIOD_MS / T: the T templates spread evenly over
--   the days they came from (WRK_PERIOD_MS), then again over the next ones.
--   Every request is a new event in time order, continuing the stream the
--   server was warmed up with: no retry. Even spacing keeps the schema's
--   bound of an hour behind the latest event as many requests away at night
--   as by day (T / 24; ~7,700 with 100 k users): a request the server
--   handles that many requests late would be rejected (400), and the script
--   fails. A second run continues with WRK_START = the first's requests plus
--   a margin for any in flight when it stopped.
-- WRK_MODE=reference: POST /score, the bodies of WRK_BODIES (one JSON per
--   line: a scored event's features) in turn.
--
-- done() prints one line for the script to parse:
--   wrk-result: requests=N seconds=S p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=.. non2xx=.. errors=..
local mode = os.getenv("WRK_MODE") or "vigil"
local bodies_path = os.getenv("WRK_BODIES")
local key = os.getenv("WRK_KEY") or ""
local start = tonumber(os.getenv("WRK_START") or "0")
local start_ms = tonumber(os.getenv("WRK_START_MS") or "0")
local period_ms = tonumber(os.getenv("WRK_PERIOD_MS") or "86400000")

-- vigil: the templates' parts (before id, between id and time, after time)
-- back to back in memory outside Lua's heap, and where each part starts and
-- ends. Kept as Lua tables and strings (~185 k templates, ~700 k objects,
-- ~130 MB), they made LuaJIT's collections stop wrk for ~130 ms: every
-- connection's answer then waited, and wrk's coordinated-omission
-- correction turned each pause into ~1 % of the samples (p99 30-50 ms
-- whatever the server did), the more often the faster the server went.
-- With the heap holding only each request's strings, a collection is short.
local ffi = require("ffi")
ffi.cdef("void *malloc(size_t size);")
local blob = nil   -- char*, never freed: wrk exits after the run
local spans = nil  -- int32_t*: 6 per template, offset and length of each part
local ntemplates = 0
local requests = {}   -- reference: ready request strings
local n = start - 1
local last_sec, last_prefix = -1, ""
-- The request line and headers are formatted once (wrk.format adds Host; with
-- no body it ends in an empty line): per request only Content-Length and the
-- body are appended, to keep the client's share of the shared cores small.
local head = nil  -- vigil: set by init

local function split_tabs(line)
  local parts = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do parts[#parts + 1] = field end
  return parts
end

function init(args)
  head = wrk.format("POST", "/v1/events",
                    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}):sub(1, -3)
  local f = assert(io.open(bodies_path, "r"), "WRK_BODIES: cannot open " .. tostring(bodies_path))
  local parts, bounds, pos = {}, {}, 0
  for line in f:lines() do
    if line ~= "" then
      if mode == "vigil" then
        local t = split_tabs(line)
        assert(#t == 3, "WRK_BODIES: a template line without its three tab-separated parts")
        for _, part in ipairs(t) do
          parts[#parts + 1] = part
          bounds[#bounds + 1] = pos
          bounds[#bounds + 1] = #part
          pos = pos + #part
        end
        ntemplates = ntemplates + 1
      else
        requests[#requests + 1] = wrk.format("POST", "/score", {["Content-Type"] = "application/json"}, line)
      end
    end
  end
  f:close()
  if mode == "vigil" then
    assert(ntemplates > 0, "WRK_BODIES: no template")
    local all = table.concat(parts)
    blob = ffi.cast("char *", ffi.C.malloc(#all))
    spans = ffi.cast("int32_t *", ffi.C.malloc(4 * #bounds))
    assert(blob ~= nil and spans ~= nil, "out of memory for the templates")
    ffi.copy(blob, all, #all)
    for i = 1, #bounds do spans[i - 1] = bounds[i] end
    all, parts, bounds = nil, nil, nil
    collectgarbage()
  end
end

-- "2024-01-08T00:02:36.121Z" for a time in ms (the date part cached per second).
local function iso(ms)
  local sec = math.floor(ms / 1000)
  if sec ~= last_sec then
    last_sec = sec
    last_prefix = os.date("!%Y-%m-%dT%H:%M:%S", sec)
  end
  return string.format("%s.%03dZ", last_prefix, ms - sec * 1000)
end

function request()
  n = n + 1
  if mode == "vigil" then
    local o = (n % ntemplates) * 6
    local ms = start_ms + math.floor(n * period_ms / ntemplates)
    local body = ffi.string(blob + spans[o], spans[o + 1]) .. string.format("e%012d", 100000000000 + n) ..
                 ffi.string(blob + spans[o + 2], spans[o + 3]) .. iso(ms) .. ffi.string(blob + spans[o + 4], spans[o + 5])
    return head .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
  end
  return requests[(n - 1) % #requests + 1]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "wrk-result: requests=%d seconds=%.3f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, e.status,
    e.connect + e.read + e.write + e.timeout))
end
