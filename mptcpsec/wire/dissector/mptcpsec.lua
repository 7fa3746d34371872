-- mptcpsec.lua: Wireshark / tshark dissector for MPTCPsec records.
--
-- Decodes what Wireshark does not know: the record header (papers/SPEC.md section 2), the
-- record types and flags (section 3), the MPTCP options inside a record (section 5: DSS
-- and the MPTCPsec SUBFLOW and WINDOW options of the MP_EXPERIMENTAL subtype 15), the
-- body as ciphertext and 16-byte tag, and the MPTCPsec options that `mptcpsec pcap`
-- copies into TCP headers (section 9), which Wireshark shows as "Unknown (15)".
--
--   tshark -X lua_script:$(mptcpsec pcap --dissector-path) -r run.pcap -V
--   wireshark -X lua_script:$(mptcpsec pcap --dissector-path) run.pcap
--   or copy the file to ~/.local/lib/wireshark/plugins/
--
-- Records are found by a heuristic on TCP payloads (version 1, a known type, flags that
-- type allows, options starting with kind 30) and then stick to the conversation; records
-- spanning segments are reassembled. Preferences: a TCP port to decode as MPTCPsec, and
-- whether bodies are plaintext (`--mode plain` runs, and captures written with a key log).

local mps = Proto("mptcpsec", "MPTCPsec record")

local TYPES = { [1] = "DATA", [2] = "CONTROL", [3] = "HANDSHAKE", [4] = "KEY_UPDATE",
                [5] = "CLOSE", [6] = "JOIN" }
local SUBTYPES = { [0] = "MP_CAPABLE", [1] = "MP_JOIN", [2] = "DSS", [3] = "ADD_ADDR",
                   [4] = "REMOVE_ADDR", [5] = "MP_PRIO", [6] = "MP_FAIL", [7] = "MP_FASTCLOSE",
                   [8] = "MP_TCPRST", [15] = "MP_EXPERIMENTAL (MPTCPsec)" }
local EXT_TYPES = { [0] = "SUBFLOW", [1] = "WINDOW" }
local REASONS = { [0] = "none", [1] = "authentication", [2] = "malformed-record",
                  [3] = "record-too-large", [4] = "unexpected-record",
                  [5] = "transport-closed", [6] = "join-failed", [7] = "key-exhausted" }
-- Flag bits each type defines (section 3); any other bit makes a record invalid.
local ALLOWED_FLAGS = { [1] = 0, [2] = 0, [3] = 0x01, [4] = 0x01, [5] = 0, [6] = 0 }
local HEADER_LEN, TAG_LEN, KIND_MPTCP = 6, 16, 30

local f = mps.fields
f.version = ProtoField.uint8("mptcpsec.version", "Version")
f.type = ProtoField.uint8("mptcpsec.type", "Type", base.DEC, TYPES)
f.flags = ProtoField.uint8("mptcpsec.flags", "Flags", base.HEX)
f.clear = ProtoField.bool("mptcpsec.flags.clear", "CLEAR (unprotected)", 8, nil, 0x01)
f.update_requested = ProtoField.bool("mptcpsec.flags.update_requested",
                                     "UPDATE_REQUESTED", 8, nil, 0x01)
f.opt_len = ProtoField.uint8("mptcpsec.opt_len", "Options length")
f.body_len = ProtoField.uint16("mptcpsec.body_len", "Body length")
f.protected = ProtoField.bool("mptcpsec.protected", "Protected (AEAD)")
f.options = ProtoField.bytes("mptcpsec.options", "MPTCP options (authenticated)")
f.opt_kind = ProtoField.uint8("mptcpsec.option.kind", "Kind")
f.opt_length = ProtoField.uint8("mptcpsec.option.length", "Length")
f.opt_subtype = ProtoField.uint8("mptcpsec.option.subtype", "Subtype", base.DEC, SUBTYPES,
                                 0xF0)
f.dss_flags = ProtoField.uint8("mptcpsec.dss.flags", "DSS flags", base.HEX, nil, 0x1F)
f.data_fin = ProtoField.bool("mptcpsec.dss.data_fin", "DATA_FIN", 8, nil, 0x10)
f.data_ack = ProtoField.uint64("mptcpsec.dss.data_ack", "DATA_ACK")
f.dsn = ProtoField.uint64("mptcpsec.dss.dsn", "Data sequence number")
f.ssn = ProtoField.uint32("mptcpsec.dss.ssn", "Subflow sequence number")
f.data_len = ProtoField.uint16("mptcpsec.dss.data_len", "Data-level length")
f.checksum = ProtoField.uint16("mptcpsec.dss.checksum", "Checksum", base.HEX)
f.ext_type = ProtoField.uint8("mptcpsec.ext_type", "MPTCPsec option", base.DEC, EXT_TYPES,
                              0x0F)
f.reason = ProtoField.uint8("mptcpsec.subflow.reason", "Reason", base.DEC, REASONS)
f.subflow_id = ProtoField.uint32("mptcpsec.subflow.id", "Subflow ID")
f.window_reserved = ProtoField.uint8("mptcpsec.window.reserved", "Reserved", base.HEX)
f.window_edge = ProtoField.uint64("mptcpsec.window.edge", "Receive window right edge (DSN)")
f.ciphertext = ProtoField.bytes("mptcpsec.ciphertext", "Ciphertext")
f.tag = ProtoField.bytes("mptcpsec.tag", "Tag")
f.plaintext = ProtoField.bytes("mptcpsec.plaintext", "Plaintext")

local e_malformed = ProtoExpert.new("mptcpsec.malformed", "Malformed MPTCPsec record",
                                    expert.group.MALFORMED, expert.severity.ERROR)
mps.experts = { e_malformed }

mps.prefs.port = Pref.uint("TCP port", 0, "Also decode this TCP port as MPTCPsec (0: none)")
mps.prefs.plaintext = Pref.bool("Bodies are plaintext", false,
    "Set for --mode plain captures and for captures written with a key log (opened records)")

-- The MP_EXPERIMENTAL value after kind and length (SUBFLOW: 8 bytes, WINDOW: 12).
local function dissect_experimental(tvb, off, olen, tree)
    local ext = bit.band(tvb(off + 2, 1):uint(), 0x0F)
    tree:add(f.ext_type, tvb(off + 2, 1))
    if ext == 0 and olen == 8 then
        tree:add(f.reason, tvb(off + 3, 1))
        tree:add(f.subflow_id, tvb(off + 4, 4))
        local reason = tvb(off + 3, 1):uint()
        return string.format("SUBFLOW id %d%s", tvb(off + 4, 4):uint(),
            reason ~= 0 and (" reason " .. (REASONS[reason] or tostring(reason))) or "")
    elseif ext == 1 and olen == 12 then
        tree:add(f.window_reserved, tvb(off + 3, 1))
        tree:add(f.window_edge, tvb(off + 4, 8))
        return "WINDOW edge " .. tostring(tvb(off + 4, 8):uint64())
    end
    tree:add_proto_expert_info(e_malformed, "MPTCPsec option of unknown type or length")
    return "MPTCPsec option " .. ext
end

local function dissect_dss(tvb, off, olen, tree)
    local flags = bit.band(tvb(off + 3, 1):uint(), 0x1F)
    tree:add(f.dss_flags, tvb(off + 3, 1))
    tree:add(f.data_fin, tvb(off + 3, 1))
    local pos, parts = off + 4, {}
    if bit.band(flags, 0x01) ~= 0 then
        local n = bit.band(flags, 0x02) ~= 0 and 8 or 4
        if pos + n > off + olen then return "DSS (truncated)" end
        tree:add(f.data_ack, tvb(pos, n), tvb(pos, n):uint64())
        parts[#parts + 1] = "ack " .. tostring(tvb(pos, n):uint64())
        pos = pos + n
    end
    if bit.band(flags, 0x04) ~= 0 then
        local n = bit.band(flags, 0x08) ~= 0 and 8 or 4
        if pos + n + 6 > off + olen then return "DSS (truncated)" end
        tree:add(f.dsn, tvb(pos, n), tvb(pos, n):uint64())
        parts[#parts + 1] = "dsn " .. tostring(tvb(pos, n):uint64())
        pos = pos + n
        tree:add(f.ssn, tvb(pos, 4))
        tree:add(f.data_len, tvb(pos + 4, 2))
        parts[#parts + 1] = "len " .. tvb(pos + 4, 2):uint()
        pos = pos + 6
        if pos + 2 <= off + olen then tree:add(f.checksum, tvb(pos, 2)) end
    end
    if bit.band(flags, 0x10) ~= 0 then parts[#parts + 1] = "DATA_FIN" end
    return "DSS " .. table.concat(parts, " ")
end

-- The option area of a record: whole MPTCP options back to back.
local function dissect_options(tvb, off, len, tree)
    local names = {}
    local stop = off + len
    while off < stop do
        if stop - off < 3 then
            tree:add_proto_expert_info(e_malformed, "option area ends inside an option")
            break
        end
        local kind, olen = tvb(off, 1):uint(), tvb(off + 1, 1):uint()
        if kind ~= KIND_MPTCP or olen < 3 or off + olen > stop then
            tree:add_proto_expert_info(e_malformed, "not a whole MPTCP option")
            break
        end
        local subtype = bit.rshift(tvb(off + 2, 1):uint(), 4)
        local st = tree:add(mps, tvb(off, olen), "MPTCP option: " ..
                            (SUBTYPES[subtype] or ("subtype " .. subtype)))
        st:add(f.opt_kind, tvb(off, 1))
        st:add(f.opt_length, tvb(off + 1, 1))
        st:add(f.opt_subtype, tvb(off + 2, 1))
        local text = SUBTYPES[subtype] or ("subtype " .. subtype)
        if subtype == 15 then
            text = dissect_experimental(tvb, off, olen, st)
        elseif subtype == 2 and olen >= 4 then
            text = dissect_dss(tvb, off, olen, st)
        end
        if text ~= SUBTYPES[subtype] then st:append_text(" (" .. text .. ")") end
        names[#names + 1] = text
        off = off + olen
    end
    return table.concat(names, ", ")
end

local function is_protected(rtype, flags)
    if mps.prefs.plaintext or rtype == 6 then return false end
    if rtype == 3 then return bit.band(flags, 0x01) == 0 end
    return true
end

local function dissect_record(tvb, off, tree)
    local rtype, flags = tvb(off + 1, 1):uint(), tvb(off + 2, 1):uint()
    local opt_len, body_len = tvb(off + 3, 1):uint(), tvb(off + 4, 2):uint()
    local total = HEADER_LEN + opt_len + body_len
    local name = TYPES[rtype] or ("type " .. rtype)
    local rt = tree:add(mps, tvb(off, total), "MPTCPsec " .. name .. " record")
    rt:add(f.version, tvb(off, 1))
    rt:add(f.type, tvb(off + 1, 1))
    local ft = rt:add(f.flags, tvb(off + 2, 1))
    if rtype == 3 then ft:add(f.clear, tvb(off + 2, 1)) end
    if rtype == 4 then ft:add(f.update_requested, tvb(off + 2, 1)) end
    if ALLOWED_FLAGS[rtype] == nil or bit.band(flags, bit.bnot(ALLOWED_FLAGS[rtype])) ~= 0 then
        rt:add_proto_expert_info(e_malformed, "unknown type or flag bits set")
    end
    rt:add(f.opt_len, tvb(off + 3, 1))
    rt:add(f.body_len, tvb(off + 4, 2))
    local prot = is_protected(rtype, flags)
    rt:add(f.protected, prot):set_generated()
    local summary = ""
    if opt_len > 0 then
        local ot = rt:add(f.options, tvb(off + HEADER_LEN, opt_len))
        summary = dissect_options(tvb, off + HEADER_LEN, opt_len, ot)
    end
    local body = off + HEADER_LEN + opt_len
    if prot then
        if body_len < TAG_LEN then
            rt:add_proto_expert_info(e_malformed, "protected body shorter than its tag")
        else
            if body_len > TAG_LEN then
                rt:add(f.ciphertext, tvb(body, body_len - TAG_LEN))
            end
            rt:add(f.tag, tvb(body + body_len - TAG_LEN, TAG_LEN))
        end
    elseif body_len > 0 then
        rt:add(f.plaintext, tvb(body, body_len))
    end
    local text = name
    if summary ~= "" then text = text .. " [" .. summary .. "]" end
    rt:append_text(string.format(", %d bytes%s", prot and math.max(0, body_len - TAG_LEN)
                   or body_len, prot and " encrypted" or ""))
    return total, text
end

function mps.dissector(tvb, pinfo, tree)
    local len, off, texts = tvb:len(), 0, {}
    while off < len do
        local remaining = len - off
        if remaining < HEADER_LEN then
            pinfo.desegment_offset = off
            pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
            break
        end
        local need = HEADER_LEN + tvb(off + 3, 1):uint() + tvb(off + 4, 2):uint()
        if remaining < need then
            pinfo.desegment_offset = off
            pinfo.desegment_len = need - remaining
            break
        end
        local used, text = dissect_record(tvb, off, tree)
        texts[#texts + 1] = text
        off = off + used
    end
    if #texts > 0 then
        pinfo.cols.protocol = "MPTCPsec"
        pinfo.cols.info:append(" " .. table.concat(texts, "; "))
    end
    return len
end

local function heuristic(tvb, pinfo, tree)
    if tvb:len() < HEADER_LEN or tvb(0, 1):uint() ~= 1 then return false end
    local rtype, flags = tvb(1, 1):uint(), tvb(2, 1):uint()
    local allowed = ALLOWED_FLAGS[rtype]
    if allowed == nil or bit.band(flags, bit.bnot(allowed)) ~= 0 then return false end
    local opt_len, body_len = tvb(3, 1):uint(), tvb(4, 2):uint()
    if opt_len > 0 and tvb:len() > HEADER_LEN and tvb(HEADER_LEN, 1):uint() ~= KIND_MPTCP then
        return false
    end
    if is_protected(rtype, flags) and body_len < TAG_LEN then return false end
    pinfo.conversation = mps
    mps.dissector(tvb, pinfo, tree)
    return true
end
mps:register_heuristic("tcp", heuristic)

local registered_port = 0
function mps.prefs_changed()
    local tcp_port = DissectorTable.get("tcp.port")
    if registered_port ~= 0 then tcp_port:remove(registered_port, mps) end
    registered_port = mps.prefs.port
    if registered_port ~= 0 then tcp_port:add(registered_port, mps) end
end

-- MPTCPsec options in the TCP header (copied there by `mptcpsec pcap`): Wireshark's
-- MPTCP dissector stops at "Unknown (15)"; this postdissector decodes them.
local tcpopt = Proto("mptcpsec_tcpopt", "MPTCPsec option in the TCP header")
local mptcp_subtype = Field.new("tcp.options.mptcp.subtype")

function tcpopt.dissector(tvb, pinfo, tree)
    local subtypes = { mptcp_subtype() }
    for _, fi in ipairs(subtypes) do
        if fi.value == 15 and fi.offset >= 2 and fi.offset < tvb:len() then
            local off = fi.offset - 2  -- kind and length precede the subtype byte
            local olen = tvb(off + 1, 1):uint()
            if tvb(off, 1):uint() == KIND_MPTCP and olen >= 3 and off + olen <= tvb:len() then
                local st = tree:add(tcpopt, tvb(off, olen))
                st:append_text(": " .. dissect_experimental(tvb, off, olen, st))
            end
        end
    end
end
register_postdissector(tcpopt)
