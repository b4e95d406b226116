"""The delivery side: arq worker, delivery engine, and one adapter package per vendor kind."""
