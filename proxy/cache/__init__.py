"""The result cache: answers kept per organization, query and data version, shared by a host's workers.

key.py        the one function that builds a key, and the ETag shown to callers
entry.py      a stored answer: body, ETag, and the engine's validators that prove it current
freshness.py  how long an answer may be served when its interval touches the present
store.py      where answers live: an interface, and the local store shared by every worker
flight.py     one backend query for identical requests in flight, across threads and workers
results.py    the lookup around a backend call, as the service uses it
"""
