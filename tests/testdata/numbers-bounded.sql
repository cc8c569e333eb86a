-- examples/numbers.sql with limits: each connector ingests ten numbers and
-- reaches end of input, so TestNumbersExample can check every value once.
-- c1 is created paused, c2 runs at once. Start c1 with
--   sluice connector numbers numbers c1 start
-- or
--   temporal workflow signal --workflow-id pipeline-numbers --name connector.start \
--     --input '{"table":"numbers","connector":"c1"}'
CREATE TABLE numbers (
  num INT
) WITH (
  'connectors' = '[
    {
      "name": "c1",
      "paused": true,
      "transport": {
        "name": "datagen",
        "config": {"plan": [{"limit": 10, "rate": 1, "fields": {"num": {"range": [0, 10], "strategy": "increment"}}}]}
      }
    },
    {
      "name": "c2",
      "paused": false,
      "transport": {
        "name": "datagen",
        "config": {"plan": [{"limit": 10, "rate": 1, "fields": {"num": {"range": [10, 20], "strategy": "increment"}}}]}
      }
    }
  ]'
);
