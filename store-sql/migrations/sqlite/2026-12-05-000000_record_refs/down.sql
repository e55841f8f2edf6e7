DROP TABLE record_ref_counters;
DROP TABLE record_refs;
