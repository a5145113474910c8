"""The PowerFlex storage driver: naming, sizing, configuration and volume operations."""
