"""What runs beside the app and outlives every release: PostgreSQL and Redis, their data, the dumps.

- databases.py: Accessories, the two containers on a private network with retained volumes;
- connections.py: the URLs every role reaches them by;
- backups.py: the scripts that dump the database before a migration, list the dumps, restore one.

Imports from config/, host/ and cluster/.
"""
