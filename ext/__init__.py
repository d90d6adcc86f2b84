"""Splunk HEC forwarder for the AWS Lambda Telemetry API (external extension)."""
