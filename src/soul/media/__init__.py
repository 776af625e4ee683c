"""soul.media"""
