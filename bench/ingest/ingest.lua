-- wrk script for bench/ingest.sh: POSTs prepared Mixpanel bodies.
--
-- wrk ... -s ingest.lua URL -- ROUTE TEMPLATE_DIR COUNT [SECRET] [TOKEN]
--
-- Each template (written by make_templates.mjs) is a body split at the place
-- where every event's $insert_id ends; request() joins the segments with a
-- 12-hex token taken from a counter, so every event of every request is
-- unique and none is dropped as a duplicate. Templates are used round-robin.
-- A request counts as acknowledged when it gets 200 with the body "1"
-- ({"success":true} on Segment's /v1/batch).

local route, template_dir, template_count, secret, token
local expected_body = "1"
local templates = {}
local counter = 0
token_offset = 0
acked = 0
refused = 0
first_refusal = ""

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- base64 of a string whose length is a multiple of 3 (the token is 12 bytes).
local function base64(text)
  local out = {}
  for i = 1, #text, 3 do
    local a, b, c = text:byte(i, i + 2)
    local n = a * 65536 + b * 256 + c
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1) ..
      b64chars:sub(c3 + 1, c3 + 1) .. b64chars:sub(c4 + 1, c4 + 1)
  end
  return table.concat(out)
end

local function base64_plain(text)
  -- Basic auth header value; pads as needed.
  local padding = (3 - #text % 3) % 3
  local encoded = base64(text .. string.rep("\0", padding))
  return encoded:sub(1, #encoded - padding) .. string.rep("=", padding)
end

local threads = {}

function setup(thread)
  thread:set("token_offset", #threads * 1000000000)
  threads[#threads + 1] = thread
end

function init(args)
  route = args[1]
  template_dir = args[2]
  template_count = tonumber(args[3])
  secret = args[4]
  token = args[5]
  for index = 0, template_count - 1 do
    local path = string.format("%s/%s_%03x.txt", template_dir, route, index)
    local file = assert(io.open(path, "r"))
    local segments = {}
    for line in file:lines() do
      segments[#segments + 1] = line
    end
    file:close()
    templates[#templates + 1] = segments
  end
  wrk.method = "POST"
  if route == "track" then
    wrk.path = "/track?ip=0&verbose=0"
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  elseif route == "segment" then
    wrk.path = "/v1/batch"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Basic " .. base64_plain(token .. ":")
    expected_body = '{"success":true}'
  else
    wrk.path = "/import?verbose=0"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Basic " .. base64_plain(secret .. ":")
  end
end

function request()
  counter = counter + 1
  local token = string.format("%012x", token_offset + counter)
  local segments = templates[(counter % template_count) + 1]
  local body
  if route == "track" then
    body = "data=" .. table.concat(segments, base64(token))
  else
    body = table.concat(segments, token)
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 200 and body == expected_body then
    acked = acked + 1
  else
    refused = refused + 1
    if first_refusal == "" then
      first_refusal = status .. " " .. string.sub(body or "", 1, 200)
    end
  end
end

function done(summary, latency, requests)
  local total_acked, total_refused, refusal = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_acked = total_acked + thread:get("acked")
    total_refused = total_refused + thread:get("refused")
    if refusal == "" then
      refusal = thread:get("first_refusal")
    end
  end
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d acked=%d refused=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_timeout=%d\n",
    summary.requests, total_acked, total_refused, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max, errors.connect, errors.read, errors.write, errors.timeout))
  if refusal ~= "" then
    io.write("REFUSAL " .. refusal .. "\n")
  end
end
