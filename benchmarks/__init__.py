"""Speed, memory and quality benchmarks for captum-video. Each module prints JSON."""
