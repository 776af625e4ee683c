"""soul.curation"""
