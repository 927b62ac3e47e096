"""`make report`: REPORT.md + PNG figures from the JSON files the other stages write."""
