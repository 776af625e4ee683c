"""soul.sampling"""
