
    CREATE INDEX records_by_team ON records (entity, team_id);
    