"""PostgreSQL's migrations: the same numbers and names as SQLite's (one level up), each
written in PostgreSQL's dialect (identity keys, PL/pgSQL trigger functions)."""
