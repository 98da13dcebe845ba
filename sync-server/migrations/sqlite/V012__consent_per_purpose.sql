
    INSERT OR IGNORE INTO fields (entity, record_id, field, value, hlc, device, set_state)
        SELECT f.entity, f.record_id,
               'consents__' || lower(hex(f.record_id)),
               json_object(
                   'id', lower(substr(hex(f.record_id), 1, 8) || '-' || substr(hex(f.record_id), 9, 4)
                       || '-' || substr(hex(f.record_id), 13, 4) || '-'
                       || substr(hex(f.record_id), 17, 4) || '-' || substr(hex(f.record_id), 21, 12)),
                   'purpose', 'recording',
                   'status', json_extract(f.value, '$.status'),
                   'date', json_extract(f.value, '$.date'),
                   'method', json_extract(f.value, '$.method'),
                   'recorded_by', json_extract(f.value, '$.recorded_by'),
                   'scope', json_extract(f.value, '$.scope')),
               f.hlc, f.device, NULL
        FROM fields f
        WHERE f.entity = 'citizen' AND f.field = 'consent' AND json_valid(f.value)
          AND json_type(f.value) = 'object';
    DELETE FROM fields WHERE entity = 'citizen' AND field = 'consent';
    