-- A small JSON-Schema validator for tests: the keywords the discovery schema uses (type, properties,
-- additionalProperties, required, anyOf, oneOf, enum, pattern, minLength, maxLength, minimum, maximum, items,
-- minItems, maxProperties), with standard semantics. It checks that lua/apisix/discovery/kubernetes/schema.lua
-- accepts and rejects what APISIX's CLI would, without APISIX.

local _M = {}

local function is_array(v)
    if type(v) ~= "table" then return false end
    local n = 0
    for k in pairs(v) do
        if type(k) ~= "number" then return false end
        n = n + 1
    end
    return n == #v
end

local function type_ok(t, v)
    if t == "object" then return type(v) == "table" and (next(v) == nil or not is_array(v)) end
    if t == "array" then return type(v) == "table" and is_array(v) end
    if t == "string" then return type(v) == "string" end
    if t == "boolean" then return type(v) == "boolean" end
    if t == "integer" then return type(v) == "number" and v == math.floor(v) end
    if t == "number" then return type(v) == "number" end
    return false
end

local validate

function validate(schema, v, path)
    if schema.type and not type_ok(schema.type, v) then
        return false, path .. ": expected " .. schema.type
    end
    if schema.enum then
        local found = false
        for _, e in ipairs(schema.enum) do
            if e == v then found = true end
        end
        if not found then return false, path .. ": not in enum" end
    end
    if type(v) == "string" then
        if schema.minLength and #v < schema.minLength then return false, path .. ": too short" end
        if schema.maxLength and #v > schema.maxLength then return false, path .. ": too long" end
        if schema.pattern and not ngx.re.find(v, schema.pattern, "jo") then
            return false, path .. ": does not match " .. schema.pattern
        end
    end
    if type(v) == "number" then
        if schema.minimum and v < schema.minimum then return false, path .. ": below minimum" end
        if schema.maximum and v > schema.maximum then return false, path .. ": above maximum" end
    end
    if type(v) == "table" then
        if schema.properties or schema.required or schema.additionalProperties == false
           or schema.maxProperties then
            local count = 0
            for k, item in pairs(v) do
                count = count + 1
                local sub = schema.properties and schema.properties[k]
                if sub then
                    local ok, err = validate(sub, item, path .. "." .. k)
                    if not ok then return false, err end
                elseif schema.additionalProperties == false then
                    return false, path .. ": unknown key " .. tostring(k)
                end
            end
            if schema.maxProperties and count > schema.maxProperties then
                return false, path .. ": too many keys"
            end
            for _, r in ipairs(schema.required or {}) do
                if v[r] == nil then return false, path .. ": missing " .. r end
            end
        end
        if schema.items then
            if schema.minItems and #v < schema.minItems then return false, path .. ": too few items" end
            for i, item in ipairs(v) do
                local ok, err = validate(schema.items, item, path .. "[" .. i .. "]")
                if not ok then return false, err end
            end
        end
    end
    if schema.anyOf then
        local errs = {}
        for _, sub in ipairs(schema.anyOf) do
            local ok, err = validate(sub, v, path)
            if ok then return true end
            errs[#errs + 1] = err
        end
        return false, table.concat(errs, " | ")
    end
    if schema.oneOf then
        local matched = 0
        for _, sub in ipairs(schema.oneOf) do
            if validate(sub, v, path) then matched = matched + 1 end
        end
        if matched ~= 1 then return false, path .. ": matches " .. matched .. " of oneOf" end
    end
    return true
end

function _M.validate(schema, v)
    return validate(schema, v, "$")
end

return _M
