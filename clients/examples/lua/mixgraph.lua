-- Control a mixgraph server from Lua 5.3+ with LuaSocket (Debian: lua5.4 lua-socket).
--
--   lua5.4 mixgraph.lua [HOST] [PORT] [NODE_NAME]
--
-- OSC is small enough to write by hand with string.pack: a message is the
-- address, a type tag string and the arguments, each padded to 4 bytes.
-- Adds a gain node, sets its gain to -6 dB, queries it, reads /status and
-- removes the node, printing every reply as `address arg arg ...`.
local socket = require("socket")

local host = arg[1] or "127.0.0.1"
local port = tonumber(arg[2] or "8000")
local name = arg[3] or "lua_g"

local function pad(s) return s .. string.rep("\0", 4 - #s % 4) end

local function encode(address, ...)
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
  return pad(address) .. pad(tags) .. table.concat(data)
end

local function read_string(p, pos)
  local s = string.unpack("z", p, pos)
  return s, pos + (#s // 4 + 1) * 4
end

local function decode(p)
  local address, pos = read_string(p, 1)
  local tags
  tags, pos = read_string(p, pos)
  local args = {}
  for t in tags:sub(2):gmatch(".") do
    local v
    if t == "i" then v, pos = string.unpack(">i4", p, pos)
    elseif t == "h" then v, pos = string.unpack(">i8", p, pos)
    elseif t == "f" then v, pos = string.unpack(">f", p, pos)
    elseif t == "d" then v, pos = string.unpack(">d", p, pos)
    elseif t == "s" or t == "S" then v, pos = read_string(p, pos)
    elseif t == "b" then
      local n; n, pos = string.unpack(">i4", p, pos)
      v = "<blob " .. n .. ">"; pos = pos + (n + 3) // 4 * 4
    elseif t == "T" then v = true
    elseif t == "F" then v = false
    else v = "<" .. t .. ">" end
    args[#args + 1] = v
  end
  return address, args
end

local function show(address, args)
  local out = {address}
  for _, v in ipairs(args) do
    out[#out + 1] = math.type(v) == "float" and string.format("%g", v) or tostring(v)
  end
  print(table.concat(out, " "))
end

local udp = assert(socket.udp())
assert(udp:setsockname("*", 0))
assert(udp:setpeername(host, port))   -- replies come back to this socket
udp:settimeout(3)

-- send and wait for the reply that matches: /done|/fail <address> ..., or the address itself
local function call(address, ...)
  assert(udp:send(encode(address, ...)))
  while true do
    local p, err = udp:receive()
    if not p then error("no reply to " .. address .. ": " .. tostring(err)) end
    local a, args = decode(p)
    if ((a == "/done" or a == "/fail") and args[1] == address)
       or a == address or a == address .. ".reply" then
      show(a, args)
      if a == "/fail" then error(address .. " failed: " .. tostring(args[#args])) end
      return args
    end
  end
end

local ok, err = pcall(function()
  call("/graph/add", "gain", name)
  call("/node/" .. name .. "/gain", -6.0)
  local v = call("/node/" .. name .. "/gain")          -- a query: no arguments
  local st, status = call("/status"), {}
  for i = 1, #st - 1, 2 do status[st[i]] = st[i + 1] end
  print(string.format("# gain is %g dB; the server has %d nodes, %s xruns", v[1],
                      status.nodes, tostring(status.xruns)))
  call("/graph/remove", name)
end)
udp:close()
if not ok then io.stderr:write(tostring(err), "\n"); os.exit(1) end
