-- wrk script: POST one file as a multipart/form-data body, log every response.
--
--   wrk -t N -c N -d 12s --timeout 60s -s bench/post_file.lua URL -- FILE FIELD LOGPREFIX
--
-- FILE is read once and sent as the multipart field FIELD (cin_file / auth_video) on
-- every request. Run it with as many threads as connections (-t = -c): each thread
-- then owns exactly one connection, so request() and response() pair up and the
-- latency of each request (write of the request -> end of the response, as wrk
-- measures it, monotonic clock through LuaJIT's ffi) can be logged per status:
-- LOGPREFIX.<thread>.log gets one line "STATUS LATENCY_US DECISION" per response
-- (DECISION: A = APPROVED, R = REJECTED, - = neither). done() prints one line
-- "BENCH_SUMMARY {json}" with wrk's own counters (duration, requests, errors).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
int clock_gettime(int clk_id, bench_timespec_t *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec_t")
local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

-- main state: number the threads
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

-- thread state
local req, started, log

function init(args)
  local path, field, prefix = args[1], args[2], args[3]
  assert(path and field and prefix, "usage: -- FILE FIELD LOGPREFIX")
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local boundary = "----faceauth-bench-5c1e0b7d9a"
  local filename = path:match("([^/]+)$")
  local body = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="' .. field .. '"; filename="' .. filename .. '"\r\n'
    .. "Content-Type: application/octet-stream\r\n\r\n"
    .. data .. "\r\n--" .. boundary .. "--\r\n"
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  req = wrk.format()
  log = assert(io.open(prefix .. "." .. id .. ".log", "w"))
  log:setvbuf("line")
end

function request()
  started = now_us()
  return req
end

function response(status, headers, body)
  local us = now_us() - (started or now_us())
  local d = "-"
  if body:find('APPROVED"', 1, true) then
    d = "A"
  elseif body:find('REJECTED"', 1, true) then
    d = "R"
  end
  log:write(string.format("%d %d %s\n", status, us, d))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_SUMMARY {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"wrk_p50_us":%d,"wrk_p99_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
