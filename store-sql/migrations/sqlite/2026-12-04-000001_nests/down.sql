DROP INDEX eggs_nest;
ALTER TABLE eggs DROP COLUMN nest_id;
DROP TABLE nests;
