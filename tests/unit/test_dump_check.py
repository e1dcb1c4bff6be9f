"""The import's reading of a customer's dump.sql: what runs, what is refused and why, read the
way psql reads it (strings, identifiers, dollar quotes, comments and COPY data are never taken
for statements or meta-commands)."""

import pytest

from jobs.dump_check import DumpRefusedError, check_dump, runnable

PG_DUMP = r"""--
-- PostgreSQL database dump
--

\restrict 8JpT0Cyc3n3yRIn3dKT5gWaSfHIOx0ToekXkA3SA

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET row_security = off;
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;
CREATE FUNCTION public.f() RETURNS void
    LANGUAGE plpgsql
    AS $_$ BEGIN EXECUTE 'ALTER ROLE x'; RAISE NOTICE '\connect'; END $_$;
CREATE TABLE public.res_partner (id integer NOT NULL, name character varying, "owner to" text);
COMMENT ON COLUMN public.res_partner.name IS 'change the OWNER TO someone; \! no';
COPY public.res_partner (id, name, "owner to") FROM stdin;
1	ALTER ROLE odoo SUPERUSER;	\\! rm -rf /
2	\connect postgres	x
\.
INSERT INTO public.t VALUES ('it''s', E'it\'s; \\! x', $$ \o /tmp $$);
GRANT ALL ON SCHEMA public TO PUBLIC;
/* a /* nested */ comment; \! id */
-- a comment \! id
SELECT 1; -- \connect in a comment

\unrestrict 8JpT0Cyc3n3yRIn3dKT5gWaSfHIOx0ToekXkA3SA
"""


def test_a_dump_as_pg_dump_writes_it_passes_and_loses_only_its_restrict_pair() -> None:
    lines = PG_DUMP.splitlines(keepends=True)
    assert check_dump(lines) == len(lines)
    ran = list(runnable(lines))
    assert [line for line in lines if line not in ran] == [
        "\\restrict 8JpT0Cyc3n3yRIn3dKT5gWaSfHIOx0ToekXkA3SA\n",
        "\\unrestrict 8JpT0Cyc3n3yRIn3dKT5gWaSfHIOx0ToekXkA3SA\n",
    ]
    # COPY data that looks like a restrict line is data, and stays.
    data = ["COPY t (a) FROM stdin;\n", "\\restrict x\n", "\\.\n"]
    assert list(runnable(data)) == data


@pytest.mark.parametrize(
    ("dump", "reason"),
    [
        ("ALTER ROLE odoo SUPERUSER;", "changes roles"),
        ("create role intruder login;", "changes roles"),
        ("DROP USER odoo;", "changes roles"),
        ("ALTER GROUP g ADD USER u;", "changes roles"),
        ("GRANT pg_read_server_files TO odoo;", "changes role membership"),
        ("REVOKE odoo FROM other;", "changes role membership"),
        ("ALTER TABLE public.t OWNER TO postgres;", "changes ownership"),
        ("REASSIGN OWNED BY odoo TO postgres;", "changes ownership"),
        ("ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT ALL ON TABLES TO x;", "another role"),
        ("ALTER DATABASE postgres SET search_path = x;", "a database's settings"),
        ("CREATE DATABASE other;", "a database's settings"),
        ("ALTER SYSTEM SET fsync = off;", "server's settings"),
        ("LOAD 'evil';", "loads a server library"),
        ("SET ROLE postgres;", "session's identity"),
        ("SET SESSION AUTHORIZATION postgres;", "session's identity"),
        ("RESET ROLE;", "session's identity"),
        ("SELECT pg_catalog.set_config('role', 'postgres', false);", "set_config"),
        ("SELECT set_config(current_setting('x'), 'y', false);", "set_config"),
        ("SET standard_conforming_strings = off;", "standard_conforming_strings"),
        ("SET standard_conforming_strings = 'off';", "standard_conforming_strings"),
        ("COPY t FROM PROGRAM 'id';", "COPY other than FROM stdin"),
        ("COPY t TO '/tmp/x';", "COPY other than FROM stdin"),
        ("\\connect postgres", "\\connect"),
        ("\\c postgres", "\\c "),
        ("SELECT 1; \\! id", "\\!"),
        ("\\o /tmp/out", "\\o"),
        ("\\i /etc/passwd", "\\i"),
        ("\\copy t from '/etc/passwd'", "\\copy"),
        ("\\set ON_ERROR_STOP 0", "\\set"),
        ("COPY t FROM stdin; \\! id\n1\n\\.", "text after COPY"),
        ("COPY t FROM stdin;\n1\n", "without its end marker"),
        ("SELECT 'never closed", "ends inside"),
        # An E inside a word starts no escape string: psql reads '\' as a whole string here,
        # so what follows is a meta-command, whatever an E'' reading would say.
        ("SELECT xE'\\' ; \\! id'", "\\!"),
        ("SELECT 1;\n  \\restrict not-at-the-top extra words", "\\restrict"),
    ],
)
def test_what_escapes_the_tenant_database_is_refused_with_its_reason(
    dump: str, reason: str
) -> None:
    with pytest.raises(DumpRefusedError) as refused:
        check_dump([*PG_DUMP.splitlines(keepends=True)[:12], *dump.splitlines(keepends=True)])
    assert reason in str(refused.value)
    assert refused.value.line >= 13


def test_the_line_named_is_where_the_statement_began() -> None:
    with pytest.raises(DumpRefusedError) as refused:
        check_dump(["SELECT 1;\n", "ALTER\n", "  ROLE\n", "  x SUPERUSER;\n"])
    assert refused.value.line == 2
    assert str(refused.value).startswith("dump.sql line 2: changes roles: ALTER ROLE x SUPERUSER")
