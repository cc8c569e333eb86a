-- Feldera's connector orchestration example
-- (https://docs.feldera.com/connectors/orchestration): two datagen
-- connectors that generate one number a second, for ever. c1 is created
-- paused, c2 runs at once. In a second terminal, start c1 with
--   sluice connector numbers numbers c1 start
-- or
--   temporal workflow signal --workflow-id pipeline-numbers --name connector.start \
--     --input '{"table":"numbers","connector":"c1"}'
-- and pause c2 with `sluice connector numbers numbers c2 pause`.
CREATE TABLE numbers (
  num INT
) WITH (
  'connectors' = '[
    {
      "name": "c1",
      "paused": true,
      "transport": {
        "name": "datagen",
        "config": {"plan": [{"rate": 1, "fields": {"num": {"range": [0, 10], "strategy": "increment"}}}]}
      }
    },
    {
      "name": "c2",
      "paused": false,
      "transport": {
        "name": "datagen",
        "config": {"plan": [{"rate": 1, "fields": {"num": {"range": [10, 20], "strategy": "increment"}}}]}
      }
    }
  ]'
);
