"""Details of a case from outside systems (delivery, customer, merchant, agent), fetched through a
pluggable client and cached in PostgreSQL: change events only tag a record stale; the next read
fetches it again. Its own Django app (label `context`) inside cases, so its tables, migrations
and admin stay apart from the case tables that other work migrates."""
