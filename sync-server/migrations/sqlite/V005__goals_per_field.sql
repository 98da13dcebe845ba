
    INSERT OR IGNORE INTO fields (entity, record_id, field, value, hlc, device, set_state)
        SELECT f.entity, f.record_id,
               'goals__' || lower(replace(json_extract(g.value, '$.id'), '-', '')),
               g.value, f.hlc, f.device, NULL
        FROM fields f, json_each(f.value) g
        WHERE f.entity = 'citizen' AND f.field = 'goals' AND json_valid(f.value)
          AND json_type(f.value) = 'array';
    DELETE FROM fields WHERE entity = 'citizen' AND field = 'goals';
    