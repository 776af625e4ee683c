"""soul.pipelines: SoulPipeline and the long-video driver (they sequence the maths of soul.sampling)."""
