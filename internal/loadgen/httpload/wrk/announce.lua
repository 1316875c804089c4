-- Random announces over 1000 torrents and 10000 peers (a quarter seeders),
-- compact, like "starling bench http" sends them.
local hashes = {}
math.randomseed(os.time())
for t = 1, 1000 do
  local h = {}
  for i = 1, 20 do h[i] = string.format("%%%02X", (t * 131 + i * 71 + t * i) % 256) end
  hashes[t] = table.concat(h)
end
request = function()
  local t = math.random(1000)
  local p = math.random(10000)
  local left = (p % 4 == 0) and "0" or "1000"
  local path = "/announce?info_hash=" .. hashes[t] ..
    string.format("&peer_id=-SB0001-%012d&port=%d&uploaded=0&downloaded=0&left=%s&compact=1", p, 1024 + p, left)
  return wrk.format("GET", path)
end
