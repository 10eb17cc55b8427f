"""The runtime the services share: the stream worker, Redis connections and scripts, offers
and holds, logs and metrics. Contracts (what travels and is stored) are in `shared`."""
