"""Ingestion: Fluentd Forward and HTTP receivers, a durable local log, and sinks into the lake."""
