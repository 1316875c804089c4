package redisswarm

import (
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// The keys of one swarm, in the order every swarm script takes them. All
// share the bucket's hash tag, so a script touches one Cluster slot.
//
//	1 S4  ZSET seeders, IPv4: member = address and port (6 bytes, as BEP 23
//	2 L4  ZSET leechers, IPv4       puts them on the wire), score = t, the
//	3 S6  ZSET seeders, IPv6        last announce in store seconds, plus
//	4 L6  ZSET leechers, IPv6       2^32 once the peer's completion counted
//	5 D   HASH address -> peer_id, uploaded, downloaded, left, event (45 B)
//	6 G   ZSET addresses whose completion counted and that left (stopped
//	        or port 0): they are not counted again; bounded, expires
//	7 H   HASH (bucket) info hash -> the torrent's record (recordFormat)
//	8 N   HASH (bucket) counters s, l (peers), t (torrents), c (completed)
//	9 X   ZSET (bucket) info hash -> at most the t of its oldest peer
//	        (exact after a sweep), or -inf for a peerless torrent the sweep
//	        may remove: what the sweep visits
//	10 P  STRING a small swarm packed (packFormat): its record and all its
//	        peers in one value, in place of S4 L4 S6 L6 and its H record
//	        (H then holds "P", so that the torrent is listed)
//
// A store time t is unix seconds minus epoch, so that a peer's score stays
// below 2^31 for decades and Redis keeps it as a small integer in a
// listpack. A counted peer scores t + 2^32 (a listpack entry 4 bytes
// longer), at least 2^31 (t of Announce.Now in tests may be below 0),
// above every other, so that the re-announce of a peer that was
// not counted is one ZADD XX GT CH (it changes the score only when the
// peer is in that list and not counted) instead of a ZSCORE and a ZADD.
const swarmKeys = 10

// counted is added to the score of a peer whose completion counted.
const counted = 1 << 32

// announceFormat packs the announce script's small arguments (struct).
const announceFormat = "<c1c1BBBBBBI4I4i8"

// A torrent's record in H, 28 bytes: its completed count, the sizes of
// its four sorted sets (S4 L4 S6 L6) and its relayed (WebSocket) seeders
// and leechers, each a little-endian uint32. An announce that changes
// nothing but a score reads its counts and list sizes from here in one
// HGET, instead of four ZCARDs and another hash; every script that adds
// or removes a peer writes it.
const recordFormat = "<I4I4I4I4I4I4I4"

// A small swarm (at most PackMax peers) is one string, P: a header,
// packFormat (little-endian: completed, relayed seeders and leechers, the
// sizes of its four lists S4 L4 S6 L6), then the lists' addresses in
// that order (6 or 18 bytes each, as on the wire), then one 5-byte record
// per peer in the same order: t (int32) and whether its completion
// counted (a byte). A re-announce, the common case, is then GET, a
// string.find in the peer's list and a SETRANGE of its t: two calls and
// no Lua string per peer, where the sorted sets take four (record, score,
// one or two ZRANGEs) and a Lua string per member drawn; the script
// returns P whole and the node draws the sample. Measured under
// redis-benchmark (BENCHMARKS.md, "Swarms on Redis", 7 Dec 2026): 8.7-8.9
// us of Redis CPU per re-announce against 14.3-18.1. It also takes about
// 11 bytes a peer instead of 35. A swarm that grows past PackMax moves to
// the sorted sets (its draw then stays O(numwant)); the sweep packs one
// that shrank to PackMax/2 again.
const packFormat = "<I4I4I4I2I2I2I2"

// packHeader is the length of packFormat.
const packHeader = 20

// defaultPackMax is the largest swarm kept packed: P is at most about
// 0.7 KB (IPv4), and GET, the find and the reply grow with it.
const defaultPackMax = 64

// packed holds the helpers of the scripts that change a packed swarm.
const packed = `
local PSZ = {6, 6, 18, 18}
-- The lists' addresses (L) and records (R), as tables of strings.
local function pdecode(P)
  local c, rs, rl, n1, n2, n3, n4 = struct.unpack('PACK', P)
  local n = {n1, n2, n3, n4}
  local L, R = {{}, {}, {}, {}}, {{}, {}, {}, {}}
  local pos = PHEAD + 1
  for k = 1, 4 do
    local l, sz = L[k], PSZ[k]
    for j = 1, n[k] do l[j] = string.sub(P, pos, pos + sz - 1) pos = pos + sz end
  end
  for k = 1, 4 do
    local r = R[k]
    for j = 1, n[k] do r[j] = string.sub(P, pos, pos + 4) pos = pos + 5 end
  end
  return c, rs, rl, L, R
end
local function pencode(c, rs, rl, L, R)
  local parts = {struct.pack('PACK', c, rs, rl, #L[1], #L[2], #L[3], #L[4])}
  for k = 1, 4 do parts[k + 1] = table.concat(L[k]) end
  for k = 1, 4 do parts[k + 5] = table.concat(R[k]) end
  return table.concat(parts)
end
local function pfind(l, addr)
  for j = 1, #l do if l[j] == addr then return j end end
  return nil
end
local function prec(t, counted)
  return struct.pack('<i4B', t, counted and 1 or 0)
end
-- The index entry of a packed swarm (see setIndex).
local function preindex(ih, opts, c, rs, rl, R)
  local min
  for k = 1, 4 do
    for j = 1, #R[k] do
      local t = struct.unpack('<i4', R[k][j])
      if not min or t < min then min = t end
    end
  end
  setIndex(ih, min, opts, c, rs, rl)
end
-- A new torrent starts packed: its (empty) P, and H's "P" that lists it.
local function pnew(ih)
  redis.call('HINCRBY', KEYS[8], 't', 1)
  redis.call('HSET', KEYS[7], ih, 'P')
  return struct.pack('PACK', 0, 0, 0, 0, 0, 0, 0)
end
-- Moves a swarm from the sorted sets into P.
local function pack(ih, c, rs, rl)
  local L, R = {{}, {}, {}, {}}, {{}, {}, {}, {}}
  for k = 1, 4 do
    local z = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
    for j = 1, #z, 2 do
      local t, f = tonumber(z[j + 1]), false
      if t >= HALF then t, f = t - COUNTED, true end
      L[k][#L[k] + 1] = z[j]
      R[k][#R[k] + 1] = prec(t, f)
    end
  end
  redis.call('SET', KEYS[10], pencode(c, rs, rl, L, R))
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[7], ih, 'P')
end
-- Moves a packed swarm (decoded) into the sorted sets.
local function unpackP(ih, c, rs, rl, L, R)
  for k = 1, 4 do
    if #L[k] > 0 then
      local args = {}
      for j = 1, #L[k] do
        local t, f = struct.unpack('<i4B', R[k][j])
        if f == 1 then t = t + COUNTED end
        args[#args + 1] = t
        args[#args + 1] = L[k][j]
      end
      for j = 1, #args, 1000 do
        redis.call('ZADD', KEYS[k], unpack(args, j, math.min(j + 999, #args)))
      end
    end
  end
  redis.call('DEL', KEYS[10])
  save(ih, c, {#L[1], #L[2], #L[3], #L[4]}, rs, rl)
end
`

// common is shared by the scripts that change a swarm: the clock, the
// torrent's record, whether a peerless torrent may be removed, and the
// index entry that sends the sweep to the swarm.
const common = `
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  return tonumber(redis.call('TIME')[1]) - EPOCH
end
local function cards()
  return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]),
          redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4])}
end
-- The record: completed, the lists' sizes, relayed seeders and leechers;
-- nil for an unknown torrent.
-- v is the record when the caller read it already.
local function load(ih, v)
  if v == nil then v = redis.call('HGET', KEYS[7], ih) end
  if not v then return nil end
  if #v ~= 28 then return tonumber(v) or 0, cards(), 0, 0 end
  local c, a, b, d, e, rs, rl = struct.unpack('RECORD', v)
  return c, {a, b, d, e}, rs, rl
end
local function save(ih, c, n, rs, rl)
  redis.call('HSET', KEYS[7], ih, struct.pack('RECORD', c, n[1], n[2], n[3], n[4], rs, rl))
end
-- opts: 1 remove peerless torrents, 2 keep those with a completed count.
local function removable(opts, completed, rs, rl)
  if rs + rl > 0 or opts % 2 == 0 then return false end
  return not (opts >= 2 and completed > 0)
end
-- setIndex sets the swarm's entry in the sweep's index: min, the t of
-- its oldest peer, or for a peerless swarm -inf when it may be removed,
-- else no entry.
local function setIndex(ih, min, opts, completed, rs, rl)
  if min then
    redis.call('ZADD', KEYS[9], min, ih)
  elseif removable(opts, completed, rs, rl) then
    redis.call('ZADD', KEYS[9], '-inf', ih)
  else
    redis.call('ZREM', KEYS[9], ih)
  end
end
local function reindex(ih, opts, completed, rs, rl)
  local min
  for i = 1, 4 do
    local f = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local g = redis.call('ZRANGEBYSCORE', KEYS[i], HALF, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    for _, v in ipairs({f[2] or false, g[2] or false}) do
      if v then
        v = tonumber(v)
        if v >= HALF then v = v - COUNTED end
        if not min or v < min then min = v end
      end
    end
  end
  setIndex(ih, min, opts, completed, rs, rl)
end
local function remember(addr, now)
  redis.call('ZADD', KEYS[6], now, addr)
  if redis.call('ZCARD', KEYS[6]) > GONEMAX then
    redis.call('ZREMRANGEBYRANK', KEYS[6], 0, 0)
  end
  redis.call('EXPIRE', KEYS[6], GONETTL)
end
`

// announceScript applies one announce and draws the sample. It does as
// little as it can on Redis's one thread: a re-announce in the same role
// (the common case) reads the record, changes one score and draws, and
// touches no counter, record or index; the sample is packed as drawn,
// and the node drops the requester and shuffles.
//
// That common case runs first and alone (announceFast), before the
// helpers of the other cases are even defined: in Redis's Lua each call
// builds the closures and tables it runs into (about 0.07 us a closure,
// 0.2 us a table, measured in a loop inside one EVAL), so the fast path
// keeps its numbers in locals and builds no table but the reply; the
// clock comes from the node (Store.redisNow: Redis's TIME, read twice a second), not a
// TIME call. The rest (a new peer or torrent, a role switch, a stop, a
// completion) is the general path below it.
//
// ARGV: 1 info hash, 2 address, 3 detail (45 B, "" to keep none), 4 the
// rest packed (announceFormat, fewer arguments: each costs Redis about
// 0.1 us): family ("4" or "6"), what (k: store the peer, z: completed
// with port 0, s: remove it, n: nothing), seeder (1/0), completed event
// (1/0), wanted families (bits 1 IPv4, 2 IPv6), options, ids wanted
// (1/0), now given (1/0), numwant, random seed, now.
//
// Reply: {seeders, leechers, completed, counted (1/0), IPv4 peers packed,
// IPv6 peers packed, their peer ids packed (when asked), own}: the first
// own bytes of the requester's family are the draw from its own list,
// which holds the requester or, when it was not drawn, one peer too many.
//
// A packed swarm (P, see packFormat) is tried first: its re-announce
// (packedFast) is the whole script there; every other announce to it, or
// to a new torrent, is packedGeneral. Its reply is {P, selfk, counted}
// and, when ids are asked, the swarm's details (HGETALL D), or P alone
// from packedFast: the node draws the sample from P (packedReply).
const announceScript = announceArgs + packedFast + announceDraw + announceFast + common + packed + packedGeneral + announceGeneral

// announceArgs unpacks the arguments and reads P.
const announceArgs = `
local ih, addr, detail = ARGV[1], ARGV[2], ARGV[3]
local fam, what, seeder, done, wf, opts, wantids, given, numwant, seed, now = struct.unpack('ANNOUNCE', ARGV[4])
seeder, done = seeder == 1, done == 1
local ks, kl = 1, 2
if fam == '6' then ks, kl = 3, 4 end
-- The role the peer announces is where it most likely is already.
local k1, k2 = kl, ks
if seeder then k1, k2 = ks, kl end
if given == 0 then now = tonumber(redis.call('TIME')[1]) - EPOCH end
local P = redis.call('GET', KEYS[10])
`

// packedFast is the re-announce of a peer of a packed swarm in the role
// it had, with no completion to count: its t is written in place (when
// the second changed) and P returned. The peer's address is found with
// string.find in its list's part of P (a match must start on a record),
// so that no Lua string is made per peer.
const packedFast = `
if P and what == 'k' and not done then
  local _, _, _, n1, n2, n3, n4 = struct.unpack('PACK', P)
  local s, cnt, sz, before
  if k1 == 1 then s, cnt, sz, before = PHEAD + 1, n1, 6, 0
  elseif k1 == 2 then s, cnt, sz, before = PHEAD + 1 + 6 * n1, n2, 6, n1
  elseif k1 == 3 then s, cnt, sz, before = PHEAD + 1 + 6 * (n1 + n2), n3, 18, n1 + n2
  else s, cnt, sz, before = PHEAD + 1 + 6 * (n1 + n2) + 18 * n3, n4, 18, n1 + n2 + n3 end
  local e, i = s + sz * cnt, s
  while true do
    local p = string.find(P, addr, i, true)
    if not p or p >= e then break end
    if (p - s) % sz == 0 then
      local rp = PHEAD + 1 + 6 * (n1 + n2) + 18 * (n3 + n4) + 5 * (before + (p - s) / sz)
      if struct.unpack('<i4', P, rp) ~= now then
        redis.call('SETRANGE', KEYS[10], rp - 1, struct.pack('<i4', now))
      end
      if detail ~= '' then redis.call('HSET', KEYS[5], addr, detail) end
      if wantids == 1 then return {P, k1, 0, redis.call('HGETALL', KEYS[5])} end
      return P
    end
    i = p + 1
  end
end
`

// announceDraw defines draw, which the sorted sets' paths end in: it
// picks the lists to draw from and how many from each, reads them and
// packs the reply, with the lists' sizes in locals (no table but
// ZRANGE's and ZRANDMEMBER's replies and the reply itself, unless peer
// ids are asked).
const announceDraw = `
-- c1..c4: the lists' sizes; selfk: the requester's list when it is
-- stored there (0 when not).
local function draw(c1, c2, c3, c4, rs, rl, completed, counted, selfk)
  local cs, cl = c1 + c3 + rs, c2 + c4 + rl
  if numwant <= 0 then return {cs, cl, completed, counted, '', '', '', 0} end
  -- The lists to draw from: the wanted families' leechers for a seeder
  -- that has any to be handed, else their seeders and leechers.
  local l1, l2, l3, l4 = 0, 0, 0, 0
  if wf % 2 == 1 and c2 > 0 then l2 = c2 end
  if wf >= 2 and c4 > 0 then l4 = c4 end
  if not seeder or l2 + l4 == 0 then
    if wf % 2 == 1 and c1 > 0 then l1 = c1 end
    if wf >= 2 and c3 > 0 then l3 = c3 end
  end
  local u1, u2, u3, u4 = l1 > 0, l2 > 0, l3 > 0, l4 > 0
  -- The requester is in its own list; one more is drawn from it.
  if selfk == 1 and u1 then l1 = l1 - 1
  elseif selfk == 2 and u2 then l2 = l2 - 1
  elseif selfk == 3 and u3 then l3 = l3 - 1
  elseif selfk == 4 and u4 then l4 = l4 - 1 end
  local total = l1 + l2 + l3 + l4
  local g1, g2, g3, g4 = false, false, false, false
  if total <= numwant then
    if u1 then g1 = redis.call('ZRANGE', KEYS[1], '0', '-1') end
    if u2 then g2 = redis.call('ZRANGE', KEYS[2], '0', '-1') end
    if u3 then g3 = redis.call('ZRANGE', KEYS[3], '0', '-1') end
    if u4 then g4 = redis.call('ZRANGE', KEYS[4], '0', '-1') end
  else
    -- How many from each list: a draw without replacement over the
    -- lists (multivariate hypergeometric), from a Park-Miller generator
    -- seeded by the node, whose products stay exact in doubles; all from
    -- one list when only one is used.
    local w1, w2, w3, w4 = 0, 0, 0, 0
    if total == l1 then w1 = numwant
    elseif total == l2 then w2 = numwant
    elseif total == l3 then w3 = numwant
    elseif total == l4 then w4 = numwant
    else
      local x = seed % 2147483646 + 1
      local rest = total
      for _ = 1, numwant do
        x = (x * 16807) % 2147483647
        local r = x % rest
        if r < l1 then l1 = l1 - 1 w1 = w1 + 1
        else
          r = r - l1
          if r < l2 then l2 = l2 - 1 w2 = w2 + 1
          else
            r = r - l2
            if r < l3 then l3 = l3 - 1 w3 = w3 + 1
            else l4 = l4 - 1 w4 = w4 + 1 end
          end
        end
        rest = rest - 1
      end
    end
    -- One more from the requester's own list, which the node drops.
    if w1 > 0 then g1 = redis.call('ZRANDMEMBER', KEYS[1], selfk == 1 and w1 + 1 or w1) end
    if w2 > 0 then g2 = redis.call('ZRANDMEMBER', KEYS[2], selfk == 2 and w2 + 1 or w2) end
    if w3 > 0 then g3 = redis.call('ZRANDMEMBER', KEYS[3], selfk == 3 and w3 + 1 or w3) end
    if w4 > 0 then g4 = redis.call('ZRANDMEMBER', KEYS[4], selfk == 4 and w4 + 1 or w4) end
  end
  -- Packed per family, the requester's own list first.
  local p1, p2, p3, p4 = '', '', '', ''
  if g1 then p1 = table.concat(g1) end
  if g2 then p2 = table.concat(g2) end
  if g3 then p3 = table.concat(g3) end
  if g4 then p4 = table.concat(g4) end
  local v4, v6, own = p1 .. p2, p3 .. p4, 0
  if selfk == 2 then v4 = p2 .. p1 elseif selfk == 4 then v6 = p4 .. p3 end
  if selfk == 1 then own = #p1 elseif selfk == 2 then own = #p2
  elseif selfk == 3 then own = #p3 elseif selfk == 4 then own = #p4 end
  local reply = {cs, cl, completed, counted, v4, v6, '', own}
  if wantids == 1 then
    local got, order = {g1, g2, g3, g4}, {1, 2, 3, 4}
    if selfk == 2 then order = {2, 1, 3, 4} elseif selfk == 4 then order = {1, 2, 4, 3} end
    local ids = {}
    for _, i in ipairs(order) do
      local o = got[i]
      if o then
        for j = 1, #o, 500 do
          local d = redis.call('HMGET', KEYS[5], unpack(o, j, math.min(j + 499, #o)))
          for _, v in ipairs(d) do
            if v then ids[#ids + 1] = string.sub(v, 1, 20) else ids[#ids + 1] = string.rep('\0', 20) end
          end
        end
      end
    end
    reply[7] = table.concat(ids)
  end
  return reply
end
`

// announceFast is the common case: a re-announce, in the role it had,
// of a peer whose completion was not counted, to a torrent with a
// record. One ZADD XX GT CH changes the score (only when the peer is in
// that list and not counted) and nothing else.
const announceFast = `
local rec = false
if not P then rec = redis.call('HGET', KEYS[7], ih) end
local fast = false
if rec and #rec == 28 and what == 'k' and not done and
    redis.call('ZADD', KEYS[k1], 'XX', 'GT', 'CH', now, addr) == 1 then
  if detail ~= '' then redis.call('HSET', KEYS[5], addr, detail) end
  local c, a, b, d, e, rs, rl = struct.unpack('RECORD', rec)
  -- A record that says the swarm is empty drifted: the general path
  -- sets the index as it would have.
  if a + b + d + e > 0 then return draw(a, b, d, e, rs, rl, c, 0, k1) end
  fast = true
end
`

// packedGeneral is every other announce to a packed swarm, and the
// first to a new torrent (with PackMax 0, new torrents start in the
// sorted sets): the swarm is decoded into tables, changed as
// announceGeneral changes the sorted sets, and written back; past
// PackMax peers it moves to the sorted sets and is drawn from there.
const packedGeneral = `
if P or ((not rec or rec == 'P') and PACKMAX > 0) then
  local newt = false
  if not P then
    if what ~= 'k' and what ~= 'z' then return {0, 0, 0, 0, '', '', '', 0} end
    if rec == 'P' then
      -- P was lost (evicted): the torrent is kept, its peers are gone.
      P = struct.pack('PACK', 0, 0, 0, 0, 0, 0, 0)
    else
      P = pnew(ih)
      newt = true
    end
  end
  local c, rs, rl, L, R = pdecode(P)
  local counted = 0
  local oldk, j = k1, pfind(L[k1], addr)
  if not j then oldk, j = k2, pfind(L[k2], addr) end
  local was = false
  if j then was = string.byte(R[oldk][j], 5) == 1 end
  local write = newt
  if what == 'k' then
    if not j then was = redis.call('ZREM', KEYS[6], addr) == 1 end
    if done and not was then was, counted = true, 1 end
    if j and oldk == k1 then
      R[k1][j] = prec(now, was)
    else
      if j then
        table.remove(L[oldk], j)
        table.remove(R[oldk], j)
        redis.call('HINCRBY', KEYS[8], oldk % 2 == 1 and 's' or 'l', -1)
      end
      L[k1][#L[k1] + 1] = addr
      R[k1][#R[k1] + 1] = prec(now, was)
      redis.call('HINCRBY', KEYS[8], k1 % 2 == 1 and 's' or 'l', 1)
    end
    if detail ~= '' then redis.call('HSET', KEYS[5], addr, detail) end
    write = true
  elseif what == 'z' then
    if not redis.call('ZSCORE', KEYS[6], addr) then counted = 1 end
    remember(addr, now)
  elseif what == 's' and j then
    table.remove(L[oldk], j)
    table.remove(R[oldk], j)
    redis.call('HDEL', KEYS[5], addr)
    redis.call('HINCRBY', KEYS[8], oldk % 2 == 1 and 's' or 'l', -1)
    if was then remember(addr, now) end
    write = true
  end
  if counted == 1 then
    c = c + 1
    redis.call('HINCRBY', KEYS[8], 'c', 1)
    write = true
  end
  local total = #L[1] + #L[2] + #L[3] + #L[4]
  if total == 0 then
    if newt or what ~= 'n' then setIndex(ih, nil, opts, c, rs, rl) end
  elseif what == 'k' and not j then
    redis.call('ZADD', KEYS[9], 'NX', now, ih)
  end
  local selfk = 0
  if what == 'k' then selfk = k1 end
  if total > PACKMAX then
    unpackP(ih, c, rs, rl, L, R)
    return draw(#L[1], #L[2], #L[3], #L[4], rs, rl, c, counted, selfk)
  end
  if write then
    P = pencode(c, rs, rl, L, R)
    redis.call('SET', KEYS[10], P)
  end
  if wantids == 1 then return {P, selfk, counted, redis.call('HGETALL', KEYS[5])} end
  return {P, selfk, counted}
end
`

// announceGeneral is every other announce (rec, fast and now come from
// announceFast).
const announceGeneral = `
local completed, n, rs, rl = load(ih, rec)
local newt = false
if not completed then
  if what ~= 'k' and what ~= 'z' then return {0, 0, 0, 0, '', '', '', 0} end
  completed, n, rs, rl = 0, {0, 0, 0, 0}, 0, 0
  newt = true
  redis.call('HINCRBY', KEYS[8], 't', 1)
end
local changed = newt
local counted = 0
local old, oldk, was = false, k1, false
if fast then
  old = true
  what = 'r'
else
  old = redis.call('ZSCORE', KEYS[k1], addr)
  if not old and n[k2] > 0 then
    old = redis.call('ZSCORE', KEYS[k2], addr)
    oldk = k2
  end
  if old then was = tonumber(old) >= HALF end
end
-- A peer added to a list or removed from one changes its size by exactly
-- one; the sweep recounts.
local function move(k, d)
  n[k] = n[k] + d
  redis.call('HINCRBY', KEYS[8], k % 2 == 1 and 's' or 'l', d)
  changed = true
end
if what == 'r' then
  -- announceFast stored the detail.
elseif what == 'k' then
  if not old then
    was = redis.call('ZREM', KEYS[6], addr) == 1
  end
  if done and not was then
    was = true
    counted = 1
  end
  local sc = now
  if was then sc = sc + COUNTED end
  redis.call('ZADD', KEYS[k1], sc, addr)
  if not old then
    move(k1, 1)
  elseif oldk ~= k1 then
    redis.call('ZREM', KEYS[oldk], addr)
    move(k1, 1)
    move(oldk, -1)
  end
  if detail ~= '' then redis.call('HSET', KEYS[5], addr, detail) end
elseif what == 'z' then
  if not redis.call('ZSCORE', KEYS[6], addr) then counted = 1 end
  remember(addr, now)
elseif what == 's' and old then
  redis.call('ZREM', KEYS[oldk], addr)
  redis.call('HDEL', KEYS[5], addr)
  move(oldk, -1)
  if was then remember(addr, now) end
end
if counted == 1 then
  completed = completed + 1
  redis.call('HINCRBY', KEYS[8], 'c', 1)
  changed = true
end
if changed then save(ih, completed, n, rs, rl) end
-- The index holds a lower bound of the swarm's oldest peer (a peer only
-- moves forward), so only a peer new to the swarm may add it; the sweep
-- sets it exactly. A peerless swarm is indexed when it may be removed.
if n[1] + n[2] + n[3] + n[4] == 0 then
  if newt or what ~= 'n' then setIndex(ih, nil, opts, completed, rs, rl) end
elseif what == 'k' and not old then
  redis.call('ZADD', KEYS[9], 'NX', now, ih)
end
local selfk = 0
if what == 'k' or what == 'r' then selfk = k1 end
return draw(n[1], n[2], n[3], n[4], rs, rl, completed, counted, selfk)
`

// statsScript reads one swarm's counts for scrape and the API.
// ARGV: 1 info hash. Reply: {exists (1/0), seeders, leechers, completed}.
const statsScript = common + `
local P = redis.call('GET', KEYS[10])
if P then
  local c, rs, rl, n1, n2, n3, n4 = struct.unpack('PACK', P)
  return {1, n1 + n3 + rs, n2 + n4 + rl, c}
end
local c, n, rs, rl = load(ARGV[1])
if not c then return {0, 0, 0, 0} end
return {1, n[1] + n[3] + rs, n[2] + n[4] + rl, c}
`

// sweepSwarmScript removes a swarm's peers last seen at or before the
// cutoff, and the torrent when it is left peerless and may be removed. It
// recounts the lists, so that a record or counter that drifted is set
// right. A swarm in the sorted sets left with at most PackMax/2 peers is
// packed. ARGV: 1 info hash, 2 cutoff ("" to take it from Redis TIME), 3
// age (with TIME), 4 options. Reply: {peers removed, torrent removed (1/0)}.
const sweepSwarmScript = common + packed + `
local ih = ARGV[1]
local opts = tonumber(ARGV[4])
local cut = ARGV[2]
if cut == '' then cut = clock('') - tonumber(ARGV[3]) else cut = tonumber(cut) end
local P = redis.call('GET', KEYS[10])
if P then
  local c, rs, rl, L, R = pdecode(P)
  -- Sorted sets or a 28-byte record beside P were written by a node of
  -- a build before the packed layout (a rolling upgrade, which README
  -- asks operators not to do): their peers join P, as counted, and the
  -- counts that node started from 0 are added to P's.
  local old = redis.call('HGET', KEYS[7], ih)
  local merged = redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) > 0 or (old and #old == 28)
  if merged then
    if old and #old == 28 then
      local oc, _, _, _, _, ors, orl = struct.unpack('RECORD', old)
      c, rs, rl = c + oc, rs + ors, rl + orl
    end
    for k = 1, 4 do
      local z = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
      for j = 1, #z, 2 do
        local t, f = tonumber(z[j + 1]), false
        if t >= HALF then t, f = t - COUNTED, true end
        local dk, dj = nil, nil
        for kk = 1, 4 do
          if not dj then dk, dj = kk, pfind(L[kk], z[j]) end
        end
        if dj then
          -- In both: once, in P's role, last seen when either saw it.
          redis.call('HINCRBY', KEYS[8], k % 2 == 1 and 's' or 'l', -1)
          local pt, pf = struct.unpack('<i4B', R[dk][dj])
          R[dk][dj] = prec(math.max(t, pt), f or pf == 1)
        elseif #L[1] + #L[2] + #L[3] + #L[4] >= PACKMAX then
          -- P stays small (its sizes are 16-bit); the peer is dropped
          -- and comes back when it announces again, its completion
          -- remembered.
          redis.call('HINCRBY', KEYS[8], k % 2 == 1 and 's' or 'l', -1)
          redis.call('HDEL', KEYS[5], z[j])
          if f then remember(z[j], cut) end
        else
          L[k][#L[k] + 1], R[k][#R[k] + 1] = z[j], prec(t, f)
        end
      end
    end
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
    redis.call('HSET', KEYS[7], ih, 'P')
  end
  local removed, d = 0, {0, 0, 0, 0}
  for k = 1, 4 do
    local kl, kr = {}, {}
    for j = 1, #L[k] do
      if struct.unpack('<i4', R[k][j]) <= cut then
        redis.call('HDEL', KEYS[5], L[k][j])
        d[k] = d[k] + 1
      else
        kl[#kl + 1], kr[#kr + 1] = L[k][j], R[k][j]
      end
    end
    L[k], R[k] = kl, kr
    removed = removed + d[k]
  end
  if d[1] + d[3] > 0 then redis.call('HINCRBY', KEYS[8], 's', -d[1] - d[3]) end
  if d[2] + d[4] > 0 then redis.call('HINCRBY', KEYS[8], 'l', -d[2] - d[4]) end
  if #L[1] + #L[2] + #L[3] + #L[4] == 0 and removable(opts, c, rs, rl) then
    redis.call('DEL', KEYS[10], KEYS[5])
    redis.call('HDEL', KEYS[7], ih)
    redis.call('ZREM', KEYS[9], ih)
    redis.call('HINCRBY', KEYS[8], 't', -1)
    if c > 0 then redis.call('HINCRBY', KEYS[8], 'c', -c) end
    return {removed, 1}
  end
  if removed > 0 or merged then redis.call('SET', KEYS[10], pencode(c, rs, rl, L, R)) end
  preindex(ih, opts, c, rs, rl, R)
  -- A peerless torrent that is kept would come back at every sweep.
  if #L[1] + #L[2] + #L[3] + #L[4] == 0 then redis.call('ZREM', KEYS[9], ih) end
  return {removed, 0}
end
local completed, n, rs, rl = load(ih)
if not completed then
  redis.call('ZREM', KEYS[9], ih)
  return {0, 0}
end
local removed = 0
for i = 1, 4 do
  for _, r in ipairs({{'-inf', cut}, {HALF, COUNTED + cut}}) do
    local gone = redis.call('ZRANGEBYSCORE', KEYS[i], r[1], r[2])
    if #gone > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[i], r[1], r[2])
      for j = 1, #gone, 500 do
        redis.call('HDEL', KEYS[5], unpack(gone, j, math.min(j + 499, #gone)))
      end
      removed = removed + #gone
    end
  end
end
local m = cards()
local ds, dl = m[1] + m[3] - n[1] - n[3], m[2] + m[4] - n[2] - n[4]
if ds ~= 0 then redis.call('HINCRBY', KEYS[8], 's', ds) end
if dl ~= 0 then redis.call('HINCRBY', KEYS[8], 'l', dl) end
if m[1] + m[2] + m[3] + m[4] == 0 and removable(opts, completed, rs, rl) then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  redis.call('HDEL', KEYS[7], ih)
  redis.call('ZREM', KEYS[9], ih)
  redis.call('HINCRBY', KEYS[8], 't', -1)
  if completed > 0 then redis.call('HINCRBY', KEYS[8], 'c', -completed) end
  return {removed, 1}
end
save(ih, completed, m, rs, rl)
reindex(ih, opts, completed, rs, rl)
-- A peerless torrent that is kept would come back at every sweep.
if m[1] + m[2] + m[3] + m[4] == 0 then redis.call('ZREM', KEYS[9], ih) end
if PACKMAX > 0 and m[1] + m[2] + m[3] + m[4] <= PACKMAX / 2 then pack(ih, completed, rs, rl) end
return {removed, 0}
`

// setCompletedScript raises a torrent's completed count to at least the
// given one (several nodes load the same persisted counts at start-up; a
// count is never lowered), creating the torrent when the count is not 0.
// ARGV: 1 info hash, 2 count, 3 options.
const setCompletedScript = common + packed + `
local ih, want, opts = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local P = redis.call('GET', KEYS[10])
if not P and want > 0 and PACKMAX > 0 and not redis.call('HGET', KEYS[7], ih) then P = pnew(ih) end
if P then
  local c, rs, rl, n1, n2, n3, n4 = struct.unpack('PACK', P)
  if want <= c then return 0 end
  redis.call('HINCRBY', KEYS[8], 'c', want - c)
  redis.call('SET', KEYS[10], struct.pack('PACK', want, rs, rl, n1, n2, n3, n4) .. string.sub(P, PHEAD + 1))
  if n1 + n2 + n3 + n4 == 0 then setIndex(ih, nil, opts, want, rs, rl) end
  return 1
end
local c, n, rs, rl = load(ih)
if not c then
  if want == 0 then return 0 end
  n, rs, rl = {0, 0, 0, 0}, 0, 0
  redis.call('HINCRBY', KEYS[8], 't', 1)
  redis.call('HINCRBY', KEYS[8], 'c', want)
else
  if want <= c then return 0 end
  redis.call('HINCRBY', KEYS[8], 'c', want - c)
end
save(ih, want, n, rs, rl)
reindex(ih, opts, want, rs, rl)
return 1
`

// relayScript adds relayed (WebSocket) peers to a swarm's counts.
// ARGV: 1 info hash, 2 seeders change, 3 leechers change, 4 completed
// (1/0), 5 options. Reply: {seeders, leechers, completed, counted}.
const relayScript = common + packed + `
local ih, ds, dl, opts = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local done = ARGV[4] == '1'
local P = redis.call('GET', KEYS[10])
if not P and (ds > 0 or dl > 0 or done) and PACKMAX > 0 and not redis.call('HGET', KEYS[7], ih) then P = pnew(ih) end
if P then
  local c, rs, rl, n1, n2, n3, n4 = struct.unpack('PACK', P)
  local ns, nl = math.max(rs + ds, 0), math.max(rl + dl, 0)
  redis.call('HINCRBY', KEYS[8], 's', ns - rs)
  redis.call('HINCRBY', KEYS[8], 'l', nl - rl)
  local counted = 0
  if done then
    counted, c = 1, c + 1
    redis.call('HINCRBY', KEYS[8], 'c', 1)
  end
  redis.call('SET', KEYS[10], struct.pack('PACK', c, ns, nl, n1, n2, n3, n4) .. string.sub(P, PHEAD + 1))
  if n1 + n2 + n3 + n4 == 0 then setIndex(ih, nil, opts, c, ns, nl) end
  return {n1 + n3 + ns, n2 + n4 + nl, c, counted}
end
local completed, n, rs, rl = load(ih)
if not completed then
  if ds <= 0 and dl <= 0 and not done then return {0, 0, 0, 0} end
  completed, n, rs, rl = 0, {0, 0, 0, 0}, 0, 0
  redis.call('HINCRBY', KEYS[8], 't', 1)
end
local ns, nl = math.max(rs + ds, 0), math.max(rl + dl, 0)
redis.call('HINCRBY', KEYS[8], 's', ns - rs)
redis.call('HINCRBY', KEYS[8], 'l', nl - rl)
local counted = 0
if done then
  counted = 1
  completed = completed + 1
  redis.call('HINCRBY', KEYS[8], 'c', 1)
end
save(ih, completed, n, ns, nl)
reindex(ih, opts, completed, ns, nl)
return {n[1] + n[3] + ns, n[2] + n[4] + nl, completed, counted}
`

// scanScript takes (or keeps) a bucket's sweep lease and lists up to
// ARGV[5] swarms with a peer last seen at or before the cutoff, or
// removable when peerless. KEYS: 1 the lease, 2 X. ARGV: 1 node id, 2
// lease milliseconds, 3 cutoff ("" for TIME), 4 age, 5 limit. Reply:
// false when another node holds the lease, else the info hashes.
const scanScript = `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local cut = ARGV[3]
if cut == '' then cut = tonumber(redis.call('TIME')[1]) - EPOCH - tonumber(ARGV[4]) else cut = tonumber(cut) end
return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cut, 'LIMIT', 0, tonumber(ARGV[5]))
`

// luaScript is a script with its SHA-1, for the pipelined EVALSHA calls
// that rueidis.Lua.ExecMulti would precede with a SCRIPT LOAD each time.
type luaScript struct {
	*rueidis.Lua
	sha string
}

func script(src string, packMax int) *luaScript {
	src = expand(src, packMax)
	sum := sha1.Sum([]byte(src))
	return &luaScript{rueidis.NewLuaScript(src), hex.EncodeToString(sum[:])}
}
