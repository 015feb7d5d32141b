"""Test support shared by every test tier: doubles that stand outside Keel, such as a faulty upstream."""
