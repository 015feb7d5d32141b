"""Larkspur Cycles, Keel's demo company: help-center articles, support tickets and CRM records."""
