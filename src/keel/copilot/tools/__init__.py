"""The copilot's tools: typed functions over the CRM and ticket history."""
