"""analysis: co-design sweeps and dashboards over cdg runs and hwsim results."""
