-- Bound the memory of background merges. A horizontal merge reads every
-- column of every part at once; with the wide events and violations tables
-- that cost the validator about 100 MiB of peak resident memory on a
-- 1-million-event backlog. Vertical merges (key columns first, then one column
-- at a time) keep it to a few MiB at the same merge speed here.
ALTER TABLE faceaudit.events MODIFY SETTING
    vertical_merge_algorithm_min_rows_to_activate = 1,
    vertical_merge_algorithm_min_columns_to_activate = 1,
    merge_max_block_size = 2048;

ALTER TABLE faceaudit.violations MODIFY SETTING
    vertical_merge_algorithm_min_rows_to_activate = 1,
    vertical_merge_algorithm_min_columns_to_activate = 1,
    merge_max_block_size = 2048;

ALTER TABLE faceaudit.dead_letters MODIFY SETTING
    vertical_merge_algorithm_min_rows_to_activate = 1,
    vertical_merge_algorithm_min_columns_to_activate = 1,
    merge_max_block_size = 2048;
