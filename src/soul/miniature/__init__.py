"""soul.miniature"""
