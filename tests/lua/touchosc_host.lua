-- A stand-in for TouchOSC's script host, for tests: runs a layout's root script
-- (init, onReceiveOSC, update) with sendOSC/getMillis over a real UDP socket, the way
-- TouchOSC calls them (a message is {path, {{tag=, value=}, ...}}; bundles are
-- delivered message by message). Prints every address received; exits 0 when a
-- /meters/... message arrives, 1 after 5 s without one.
--   lua5.4 touchosc_host.lua SCRIPT HOST PORT
local socket = require("socket")
local script, host, port = arg[1], arg[2], tonumber(arg[3])

local function pad(s) return s .. string.rep("\0", 4 - #s % 4) end

function sendOSC(path, ...)  -- luacheck: ignore (the global TouchOSC provides)
  local tags, data = ",", {}
  for _, v in ipairs({...}) do
    if math.type(v) == "integer" then
      tags = tags .. "i"; data[#data + 1] = string.pack(">i4", v)
    elseif type(v) == "number" then
      tags = tags .. "f"; data[#data + 1] = string.pack(">f", v)
    else
      tags = tags .. "s"; data[#data + 1] = pad(tostring(v))
    end
  end
  assert(UDP:send(pad(path) .. pad(tags) .. table.concat(data)))
end

local t0 = socket.gettime()
function getMillis() return math.floor((socket.gettime() - t0) * 1000) end

local function read_string(p, pos)
  local s = string.unpack("z", p, pos)
  return s, pos + (#s // 4 + 1) * 4
end

local function messages(p, out)
  if p:sub(1, 8) == "#bundle\0" then
    local pos = 17
    while pos <= #p do
      local n = string.unpack(">i4", p, pos)
      messages(p:sub(pos + 4, pos + 3 + n), out)
      pos = pos + 4 + n
    end
    return out
  end
  local address, pos = read_string(p, 1)
  local tags
  tags, pos = read_string(p, pos)
  local args = {}
  for t in tags:sub(2):gmatch(".") do
    local v
    if t == "i" then v, pos = string.unpack(">i4", p, pos)
    elseif t == "f" then v, pos = string.unpack(">f", p, pos)
    elseif t == "s" then v, pos = read_string(p, pos)
    elseif t == "b" then
      local n; n, pos = string.unpack(">i4", p, pos)
      v = p:sub(pos, pos + n - 1); pos = pos + (n + 3) // 4 * 4
    else v = nil end
    args[#args + 1] = {tag = t, value = v}
  end
  out[#out + 1] = {address, args}
  return out
end

UDP = assert(socket.udp())
assert(UDP:setsockname("127.0.0.1", 0))
assert(UDP:setpeername(host, port))
UDP:settimeout(0.05)
dofile(script)
init()
while getMillis() < 5000 do
  local p = UDP:receive()
  if p then
    for _, m in ipairs(messages(p, {})) do
      print(m[1], m[2][1] and tostring(m[2][1].value) or "")
      if m[1]:sub(1, 8) == "/meters/" then os.exit(0) end
      if onReceiveOSC then onReceiveOSC(m, {true}) end
    end
  end
  update()
end
os.exit(1)
