"""The reporting service without the web: who is calling, what they ask, the backend's answer.

    call.py       Call (what one request brings), Record (what it did), Answer
    bodies.py     request body → validated Query, small bodies validated once
    reporting.py  ReportingService: authorize → load → plan → admit → execute → render

Nothing here imports Flask; proxy/web reads the request into a Call and turns the Answer, or
the ProxyError raised, into a response.
"""
