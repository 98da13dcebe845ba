
    ALTER TABLE applied ADD COLUMN digest BLOB;        -- SHA-256 of the mutation as received
    ALTER TABLE applied ADD COLUMN change_seq INTEGER; -- its row in the change log
    ALTER TABLE changes ADD COLUMN copy_of INTEGER;    -- a re-sent copy of that row
    