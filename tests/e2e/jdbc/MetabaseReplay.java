// A replay of what Metabase's Postgres driver (metabase/metabase, src/metabase/driver/postgres.clj
// and driver/sql_jdbc/*) sends through pgjdbc: the connection set-up of its c3p0 pool, the sync
// queries (schemas, table privileges, tables, fields, foreign keys, indexes, routines) and the
// shape of the queries its MBQL compiler emits, each prepared the way Metabase prepares them.
//
//   java -cp <classes>:/usr/share/java/postgresql.jar MetabaseReplay <host> <port> <case>

import java.sql.*;
import java.time.*;
import java.util.*;

public class MetabaseReplay extends Harness {
    /** The connection set-up Metabase (sql-jdbc driver, c3p0 pool) does, in that order. Metabase
     *  catches and logs a failure of each setter and goes on; here each failure is reported and the
     *  set-up goes on too. */
    static Connection metabaseConnection() throws SQLException {
        Properties p = new Properties();
        // metabase.db.spec :postgres + connection-details->spec (no SSL)
        p.setProperty("OpenSourceSubProtocolOverride", "true");
        p.setProperty("ApplicationName", "Metabase v0.56.0 [e2e-0000]");
        p.setProperty("sslmode", "disable");
        Connection c = connect("", p);
        // c3p0 reads the defaults it restores on check-in, then tests the connection on checkout
        step("c3p0: getTransactionIsolation (SHOW TRANSACTION ISOLATION LEVEL)", () ->
            check("default isolation", Connection.TRANSACTION_READ_COMMITTED, c.getTransactionIsolation()));
        step("c3p0: isValid(5) on checkout", () -> check("isValid(5)", true, c.isValid(5)));
        // sql-jdbc.execute/set-default-connection-options!
        step("set-best-transaction-level!: setTransactionIsolation(READ_UNCOMMITTED)", () -> {
            DatabaseMetaData md = c.getMetaData();
            check("supportsTransactionIsolationLevel(READ_UNCOMMITTED)", true,
                  md.supportsTransactionIsolationLevel(Connection.TRANSACTION_READ_UNCOMMITTED));
            c.setTransactionIsolation(Connection.TRANSACTION_READ_UNCOMMITTED);
        });
        step("set-time-zone-if-supported!: SET SESSION TIMEZONE TO 'UTC';", () -> {
            c.setReadOnly(false);
            try (Statement st = c.createStatement()) { st.execute("SET SESSION TIMEZONE TO 'UTC';"); }
        });
        step("setReadOnly(true)", () -> c.setReadOnly(true));
        step("setAutoCommit(true)", () -> c.setAutoCommit(true));
        step("setHoldability(CLOSE_CURSORS_AT_COMMIT)", () -> c.setHoldability(ResultSet.CLOSE_CURSORS_AT_COMMIT));
        return c;
    }

    /** sql-jdbc.execute/prepared-statement: how Metabase prepares every query. */
    static PreparedStatement metabasePrepare(Connection c, String sql, Object... params) throws SQLException {
        PreparedStatement ps = c.prepareStatement(sql, ResultSet.TYPE_FORWARD_ONLY, ResultSet.CONCUR_READ_ONLY,
                                                  ResultSet.CLOSE_CURSORS_AT_COMMIT);
        ps.setFetchDirection(ResultSet.FETCH_FORWARD);
        if (ps.getFetchSize() == 0) ps.setFetchSize(500);
        if (ps.getParameterMetaData().getParameterCount() < params.length)
            throw new SQLException("more parameters than placeholders");
        for (int i = 0; i < params.length; i++) {
            Object v = params[i];
            if (v instanceof LocalDate) ps.setObject(i + 1, v, Types.DATE);
            else if (v instanceof LocalDateTime) ps.setObject(i + 1, v, Types.TIMESTAMP);
            else if (v instanceof OffsetDateTime) ps.setObject(i + 1, v, Types.TIMESTAMP_WITH_TIMEZONE);
            else ps.setObject(i + 1, v);
        }
        return ps;
    }

    static List<Map<String, Object>> metabaseQuery(Connection c, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = metabasePrepare(c, sql, params)) {
            return records(ps.executeQuery());
        }
    }

    static void metabaseConnect() throws Exception {
        // driver/can-connect? opens an unpooled connection and runs SELECT 1 (clojure.java.jdbc query)
        step("can-connect?: SELECT 1", () -> {
            Properties p = new Properties();
            p.setProperty("OpenSourceSubProtocolOverride", "true");
            p.setProperty("ApplicationName", "Metabase v0.56.0 [e2e-0000]");
            p.setProperty("sslmode", "disable");
            try (Connection c = connect("", p); PreparedStatement ps = c.prepareStatement("SELECT 1"); ResultSet rs = ps.executeQuery()) {
                checkThat("SELECT 1 has a row", rs.next(), "no row");
                check("SELECT 1 value as a number", 1L, ((Number) rs.getObject(1)).longValue());
            }
        });
        step("pooled connection set-up", () -> {
            try (Connection c = metabaseConnection()) {
                step("getTransactionIsolation after set-best-transaction-level!", () ->
                    check("isolation", Connection.TRANSACTION_READ_UNCOMMITTED, c.getTransactionIsolation()));
                DatabaseMetaData md = c.getMetaData();
                // sync/dbms-version
                check("dbms-version flavor", "PostgreSQL", md.getDatabaseProductName());
                checkThat("dbms-version semantic version >= 9", md.getDatabaseMajorVersion() >= 9, md.getDatabaseMajorVersion() + "." + md.getDatabaseMinorVersion());
                // driver/db-default-timezone
                step("db-default-timezone: show timezone;", () ->
                    check("show timezone;", List.of(Map.of("TimeZone", "UTC")), metabaseQuery(c, "show timezone;")));
                // postgres-routines: server version probe
                step("SELECT current_setting('server_version_num')::int as version", () -> {
                    List<Map<String, Object>> r = metabaseQuery(c, "SELECT current_setting('server_version_num')::int as version");
                    Object v = r.isEmpty() ? null : r.get(0).get("version");
                    checkThat("server_version_num is an int >= 90000", v instanceof Integer && (Integer) v >= 90000, v);
                });
                check("isValid after set-up", true, c.isValid(5));
            }
        });
        // Metabase's "additional options" placeholder suggests prepareThreshold=0 (pgbouncer)
        step("prepareThreshold=0 connection", () -> {
            try (Connection c = connect("prepareThreshold=0")) {
                for (int i = 0; i < 6; i++) check("SELECT count(*) region run " + (i + 1), List.of(Map.of("count", 5L)),
                                                  metabaseQuery(c, "SELECT count(*) AS \"count\" FROM \"demo\".\"region\""));
            }
        });
    }

    static final String PRIVILEGES_SQL = String.join("\n",
        "with table_privileges as (",
        " select",
        "   NULL as role,",
        "   t.schemaname as schema,",
        "   t.objectname as table,",
        "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'update') as update,",
        "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'select') as select,",
        "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'insert') as insert,",
        "   pg_catalog.has_table_privilege(     current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'delete') as delete",
        " from (",
        "   select schemaname, tablename as objectname from pg_catalog.pg_tables",
        "   union",
        "   select schemaname, viewname as objectname from pg_catalog.pg_views",
        "   union",
        "   select schemaname, matviewname as objectname from pg_catalog.pg_matviews",
        " ) t",
        " where t.schemaname !~ '^pg_'",
        "   and t.schemaname <> 'information_schema'",
        "   and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')",
        ")",
        "select t.*",
        "from table_privileges t");

    static void metabaseSchemasAndPrivileges() throws Exception {
        try (Connection c = metabaseConnection()) {
            step("syncable-schemas: DatabaseMetaData.getSchemas() minus information_schema, pg_catalog", () -> {
                List<Object> schemas = new ArrayList<>();
                try (ResultSet rs = c.getMetaData().getSchemas()) {
                    while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
                }
                schemas.removeAll(List.of("information_schema", "pg_catalog"));
                checkThat("syncable schemas include demo, public, system",
                          schemas.containsAll(List.of("demo", "public", "system")), schemas);
            });
            step("current-user-table-privileges query", () -> {
                Map<String, Map<String, Object>> byTable = new TreeMap<>();
                for (Map<String, Object> m : metabaseQuery(c, PRIVILEGES_SQL))
                    byTable.put(m.get("schema") + "." + m.get("table"), m);
                for (String t : DEMO_TABLES) {
                    Map<String, Object> m = byTable.get("demo." + t);
                    check("privileges row demo." + t + " select", Boolean.TRUE, m == null ? null : m.get("select"));
                }
                Map<String, Object> p = byTable.get("system.partitions");
                check("privileges row system.partitions select", Boolean.TRUE, p == null ? null : p.get("select"));
                Map<String, Object> o = byTable.get("demo.orders");
                if (o != null) check("privileges row columns", List.of("role", "schema", "table", "update", "select", "insert", "delete"), new ArrayList<>(o.keySet()));
                checkThat("no pg_catalog / information_schema rows", byTable.keySet().stream().noneMatch(k -> k.startsWith("pg_") || k.startsWith("information_schema.")), byTable.keySet());
            });
        }
    }

    static String placeholders(int n) {
        return String.join(", ", Collections.nCopies(n, "?"));
    }

    static void metabaseTables() throws Exception {
        try (Connection c = metabaseConnection()) {
            // metabase.driver.postgres/get-tables-sql, formatted by HoneySQL 2 (:dialect :ansi => quoted)
            String sql = "SELECT \"n\".\"nspname\" AS \"schema\", \"c\".\"relname\" AS \"name\", "
                + "CASE \"c\".\"relkind\" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' "
                + "WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS \"type\", "
                + "\"d\".\"description\" AS \"description\", \"stat\".\"n_live_tup\" AS \"estimated_row_count\" "
                + "FROM \"pg_catalog\".\"pg_class\" AS \"c\" "
                + "INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"c\".\"relnamespace\" = \"n\".\"oid\" "
                + "LEFT JOIN \"pg_catalog\".\"pg_description\" AS \"d\" ON (\"c\".\"oid\" = \"d\".\"objoid\") AND (\"d\".\"objsubid\" = ?) AND (\"d\".\"classoid\" = 'pg_class'::regclass) "
                + "LEFT JOIN \"pg_stat_user_tables\" AS \"stat\" ON (\"n\".\"nspname\" = \"stat\".\"schemaname\") AND (\"c\".\"relname\" = \"stat\".\"relname\") "
                + "WHERE (\"c\".\"relnamespace\" = \"n\".\"oid\") AND (\"n\".\"nspname\" !~ ?) AND (\"n\".\"nspname\" <> ?) AND c.relkind in ('r', 'p', 'v', 'f', 'm') "
                + "AND (\"n\".\"nspname\" IN (" + placeholders(3) + ")) "
                + "ORDER BY \"type\" ASC, \"schema\" ASC, \"name\" ASC";
            step("describe-database: get-tables-sql", () -> {
                List<Map<String, Object>> r = metabaseQuery(c, sql, 0L, "^pg_", "information_schema", "demo", "public", "system");
                List<String> demo = new ArrayList<>();
                boolean partitionsIsView = false;
                for (Map<String, Object> m : r) {
                    if ("demo".equals(m.get("schema"))) {
                        demo.add((String) m.get("name"));
                        check("type of demo." + m.get("name"), "TABLE", m.get("type"));
                        check("description of demo." + m.get("name"), null, m.get("description"));
                    }
                    if ("system".equals(m.get("schema")) && "partitions".equals(m.get("name")))
                        partitionsIsView = "VIEW".equals(m.get("type"));
                }
                check("demo tables from get-tables-sql", DEMO_TABLES, demo);
                checkThat("system.partitions listed as VIEW", partitionsIsView, r);
                if (!r.isEmpty()) check("get-tables-sql columns", List.of("schema", "name", "type", "description", "estimated_row_count"), new ArrayList<>(r.get(0).keySet()));
            });
            // have-select-privilege? of drivers without :table-privileges (and Postgres FOREIGN TABLEs)
            for (String t : DEMO_TABLES) {
                step("select-privilege probe of demo." + t, () -> {
                    try (PreparedStatement ps = metabasePrepare(c, "SELECT TRUE AS \"_\" FROM \"demo\".\"" + t + "\" WHERE 1 <> 1 LIMIT 0")) {
                        checkThat("probe of demo." + t + " returns a result set", ps.execute(), "no result set");
                        check("probe rows of demo." + t, 0, rows(ps.getResultSet()).size());
                    }
                });
            }
        }
    }

    static String describeFieldsSql(int nSchemas, int nTables) {
        String typeCase = "CASE WHEN %1$s IN ('public', 'pg_catalog') THEN FORMAT('%%s', %2$s) ELSE FORMAT('\"%%s\".\"%%s\"', %1$s, %2$s) END AS \"database-type\"";
        return "SELECT \"c\".\"column_name\" AS \"name\", "
            + String.format(typeCase, "\"c\".\"udt_schema\"", "\"c\".\"udt_name\"") + ", "
            + "\"c\".\"ordinal_position\" - 1 AS \"database-position\", \"c\".\"table_schema\" AS \"table-schema\", "
            + "\"c\".\"table_name\" AS \"table-name\", \"pk\".\"column_name\" IS NOT NULL AS \"pk?\", "
            + "COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST(\"c\".\"table_schema\" AS TEXT), CAST(\"c\".\"table_name\" AS TEXT)) AS REGCLASS) AS OID), \"c\".\"ordinal_position\") AS \"field-comment\", "
            + "((\"column_default\" IS NULL) OR (LOWER(\"column_default\") = 'null')) AND (\"is_nullable\" = 'NO') "
            + "AND NOT (((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO')) AS \"database-required\", "
            + "((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO') AS \"database-is-auto-increment\" "
            + "FROM \"information_schema\".\"columns\" AS \"c\" "
            + "LEFT JOIN (SELECT \"tc\".\"table_schema\", \"tc\".\"table_name\", \"kc\".\"column_name\" "
            + "FROM \"information_schema\".\"table_constraints\" AS \"tc\" "
            + "INNER JOIN \"information_schema\".\"key_column_usage\" AS \"kc\" ON (\"tc\".\"constraint_name\" = \"kc\".\"constraint_name\") "
            + "AND (\"tc\".\"table_schema\" = \"kc\".\"table_schema\") AND (\"tc\".\"table_name\" = \"kc\".\"table_name\") "
            + "WHERE \"tc\".\"constraint_type\" = 'PRIMARY KEY') AS \"pk\" "
            + "ON (\"c\".\"table_schema\" = \"pk\".\"table_schema\") AND (\"c\".\"table_name\" = \"pk\".\"table_name\") AND (\"c\".\"column_name\" = \"pk\".\"column_name\") "
            + "WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' "
            + "AND (\"c\".\"table_schema\" IN (" + placeholders(nSchemas) + ")) AND (\"c\".\"table_name\" IN (" + placeholders(nTables) + ")) "
            + "UNION ALL "
            + "SELECT \"pa\".\"attname\" AS \"name\", "
            + String.format(typeCase, "\"ptn\".\"nspname\"", "\"pt\".\"typname\"") + ", "
            + "\"pa\".\"attnum\" - 1 AS \"database-position\", \"pn\".\"nspname\" AS \"table-schema\", \"pc\".\"relname\" AS \"table-name\", "
            + "FALSE AS \"pk?\", NULL AS \"field-comment\", FALSE AS \"database-required\", FALSE AS \"database-is-auto-increment\" "
            + "FROM \"pg_catalog\".\"pg_class\" AS \"pc\" "
            + "INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"pn\" ON \"pn\".\"oid\" = \"pc\".\"relnamespace\" "
            + "INNER JOIN \"pg_catalog\".\"pg_attribute\" AS \"pa\" ON \"pa\".\"attrelid\" = \"pc\".\"oid\" "
            + "INNER JOIN \"pg_catalog\".\"pg_type\" AS \"pt\" ON \"pt\".\"oid\" = \"pa\".\"atttypid\" "
            + "INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"ptn\" ON \"ptn\".\"oid\" = \"pt\".\"typnamespace\" "
            + "WHERE (\"pc\".\"relkind\" = 'm') AND (\"pa\".\"attnum\" >= 1) "
            + "AND (\"pn\".\"nspname\" IN (" + placeholders(nSchemas) + ")) AND (\"pc\".\"relname\" IN (" + placeholders(nTables) + ")) "
            + "ORDER BY \"table-schema\" ASC, \"table-name\" ASC, \"database-position\" ASC";
    }

    static void metabaseFields() throws Exception {
        try (Connection c = metabaseConnection()) {
            // describe-fields-pre-process-xf :postgres -> enum-types
            step("enum-types query", () -> check("enum types", List.of(), metabaseQuery(c,
                "SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                + "WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)")));
            step("describe-fields-sql for demo.orders, demo.events", () -> {
                List<Map<String, Object>> r = metabaseQuery(c, describeFieldsSql(1, 2), "demo", "events", "orders", "demo", "events", "orders");
                List<Object> got = new ArrayList<>();
                for (Map<String, Object> m : r)
                    got.add(List.of(m.get("table-name"), m.get("name"), String.valueOf(m.get("database-type")),
                                    String.valueOf(m.get("database-position")), String.valueOf(m.get("pk?")),
                                    String.valueOf(m.get("database-required")), String.valueOf(m.get("database-is-auto-increment"))));
                List<Object> want = new ArrayList<>();
                String[][] events = {{"event_id", "int8"}, {"user_id", "int8"}, {"kind", "text"}, {"amount", "float8"}, {"ts", "timestamptz"}, {"dt", "text"}};
                String[] ordersTypes = {"int8", "int8", "text", "numeric", "date", "text", "text", "int4", "text"};
                for (int i = 0; i < events.length; i++)
                    want.add(List.of("events", events[i][0], events[i][1], String.valueOf(i), "false", String.valueOf(!events[i][0].equals("amount")), "false"));
                for (int i = 0; i < ORDERS_COLUMNS.size(); i++)
                    want.add(List.of("orders", ORDERS_COLUMNS.get(i), ordersTypes[i], String.valueOf(i), "false", "true", "false"));
                check("describe-fields rows (table, name, database-type, position, pk?, required, auto-increment)", want, got);
                for (Map<String, Object> m : r) {
                    if (m.get("field-comment") != null) check("field-comment of " + m.get("name"), null, m.get("field-comment"));
                }
            });
        }
    }

    static void metabaseFks() throws Exception {
        try (Connection c = metabaseConnection()) {
            String sql = "SELECT \"fk_ns\".\"nspname\" AS \"fk-table-schema\", \"fk_table\".\"relname\" AS \"fk-table-name\", "
                + "\"fk_column\".\"attname\" AS \"fk-column-name\", \"pk_ns\".\"nspname\" AS \"pk-table-schema\", "
                + "\"pk_table\".\"relname\" AS \"pk-table-name\", \"pk_column\".\"attname\" AS \"pk-column-name\" "
                + "FROM \"pg_constraint\" AS \"c\" "
                + "INNER JOIN \"pg_class\" AS \"fk_table\" ON \"c\".\"conrelid\" = \"fk_table\".\"oid\" "
                + "INNER JOIN \"pg_namespace\" AS \"fk_ns\" ON \"c\".\"connamespace\" = \"fk_ns\".\"oid\" "
                + "INNER JOIN \"pg_attribute\" AS \"fk_column\" ON \"c\".\"conrelid\" = \"fk_column\".\"attrelid\" "
                + "INNER JOIN \"pg_class\" AS \"pk_table\" ON \"c\".\"confrelid\" = \"pk_table\".\"oid\" "
                + "INNER JOIN \"pg_namespace\" AS \"pk_ns\" ON \"pk_table\".\"relnamespace\" = \"pk_ns\".\"oid\" "
                + "INNER JOIN \"pg_attribute\" AS \"pk_column\" ON \"c\".\"confrelid\" = \"pk_column\".\"attrelid\" "
                + "WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' AND (\"c\".\"contype\" = 'f'::char) "
                + "AND (\"fk_column\".\"attnum\" = ANY(c.conkey)) AND (\"pk_column\".\"attnum\" = ANY(c.confkey)) "
                + "AND (\"fk_table\".\"relname\" IN (" + placeholders(2) + ")) AND (\"fk_ns\".\"nspname\" IN (?)) "
                + "ORDER BY \"fk-table-schema\" ASC, \"fk-table-name\" ASC";
            step("describe-fks-sql", () -> check("foreign keys of demo.orders, demo.lineitem", List.of(),
                metabaseQuery(c, sql, "orders", "lineitem", "demo")));
        }
    }

    static void metabaseIndexes() throws Exception {
        // :describe-indexes is on for postgres, though Metabase currently leaves index sync off.
        try (Connection c = metabaseConnection()) {
            String sql = "SELECT \"tmp\".\"table-schema\", \"tmp\".\"table-name\", "
                + "TRIM(BOTH '\"' FROM PG_CATALOG.PG_GET_INDEXDEF(\"tmp\".\"ci_oid\", \"tmp\".\"pos\", FALSE)) AS \"field-name\" "
                + "FROM (SELECT \"n\".\"nspname\" AS \"table-schema\", \"ct\".\"relname\" AS \"table-name\", \"ci\".\"oid\" AS \"ci_oid\", "
                + "(INFORMATION_SCHEMA._PG_EXPANDARRAY(\"i\".\"indkey\")).\"n\" AS \"pos\" "
                + "FROM \"pg_catalog\".\"pg_class\" AS \"ct\" "
                + "INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"ct\".\"relnamespace\" = \"n\".\"oid\" "
                + "INNER JOIN \"pg_catalog\".\"pg_index\" AS \"i\" ON \"ct\".\"oid\" = \"i\".\"indrelid\" "
                + "INNER JOIN \"pg_catalog\".\"pg_class\" AS \"ci\" ON \"ci\".\"oid\" = \"i\".\"indexrelid\" "
                + "WHERE (PG_CATALOG.PG_GET_EXPR(\"i\".\"indpred\", \"i\".\"indrelid\") IS NULL) "
                + "AND n.nspname !~ '^information_schema|catalog_history|pg_' "
                + "AND (\"n\".\"nspname\" IN (?)) AND (\"ct\".\"relname\" IN (" + placeholders(2) + "))) AS \"tmp\" "
                + "WHERE \"tmp\".\"pos\" = ?";
            step("describe-indexes-sql", () -> check("indexes of demo.orders, demo.lineitem", List.of(),
                metabaseQuery(c, sql, "demo", "orders", "lineitem", 1L)));
            step("describe-table-indexes: DatabaseMetaData.getIndexInfo", () ->
                check("getIndexInfo demo.orders", 0, rows(c.getMetaData().getIndexInfo(null, "demo", "orders", false, false)).size()));
        }
    }

    static void metabaseRoutines() throws Exception {
        // metabase.driver.postgres-routines/describe-routines-improved (PostgreSQL 11+ branch)
        try (Connection c = metabaseConnection()) {
            String sql = "WITH filtered_routines AS (\n"
                + " SELECT p.oid, p.proname, p.pronamespace, p.prosrc, p.pronargs,\n"
                + "        p.proargtypes, p.proallargtypes, p.proargnames, p.proargmodes,\n"
                + "        p.prokind,\n"
                + "        CASE WHEN p.prokind = 'p' THEN 'procedure' ELSE 'function' END AS routine_type\n"
                + " FROM pg_proc p\n"
                + " JOIN pg_namespace n ON n.oid = p.pronamespace\n"
                + " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prokind IN ('f', 'p')\n"
                + "),\n"
                + "routine_params AS (\n"
                + " SELECT p.oid AS routine_oid,\n"
                + "   unnest(COALESCE(p.proallargtypes::int[], p.proargtypes::int[])) AS type_oid,\n"
                + "   unnest(COALESCE(p.proargnames::text[], ARRAY(SELECT 'arg' || generate_series(1, array_length(p.proargtypes, 1))))) AS param_name,\n"
                + "   unnest(COALESCE(p.proargmodes::text[], array_fill('i'::text, ARRAY[COALESCE(array_length(p.proargtypes, 1), 0)]))) AS param_mode,\n"
                + "   generate_series(1, GREATEST(COALESCE(array_length(p.proallargtypes, 1), 0), COALESCE(array_length(p.proargtypes, 1), 0))) AS param_position\n"
                + " FROM filtered_routines p\n"
                + "),\n"
                + "param_types AS (\n"
                + " SELECT rp.routine_oid, rp.param_name, rp.param_mode, rp.param_position,\n"
                + "   CASE WHEN t.typelem != 0 AND t.typlen = -1 THEN te.typname || '[]' ELSE t.typname END AS data_type\n"
                + " FROM routine_params rp\n"
                + " JOIN pg_type t ON t.oid = rp.type_oid\n"
                + " LEFT JOIN pg_type te ON te.oid = t.typelem\n"
                + ")\n"
                + "SELECT p.oid, p.proname AS name, n.nspname AS schema, p.routine_type, pd.description AS description,\n"
                + "  p.prosrc AS definition, pg_get_function_result(p.oid) AS return_type, p.pronargs AS arg_count,\n"
                + "  COALESCE(json_agg(json_build_object('name', pt.param_name, 'mode', CASE pt.param_mode WHEN 'i' THEN 'IN' WHEN 'o' THEN 'OUT' WHEN 'b' THEN 'INOUT' WHEN 'v' THEN 'VARIADIC' WHEN 't' THEN 'TABLE' END,\n"
                + "    'type', pt.data_type, 'position', pt.param_position) ORDER BY pt.param_position) FILTER (WHERE pt.routine_oid IS NOT NULL), '[]'::json) AS parameters\n"
                + "FROM filtered_routines p\n"
                + "JOIN pg_namespace n ON n.oid = p.pronamespace\n"
                + "LEFT JOIN pg_description pd ON pd.objoid = p.oid AND pd.objsubid = 0\n"
                + "LEFT JOIN param_types pt ON pt.routine_oid = p.oid\n"
                + "GROUP BY p.oid, p.proname, n.nspname, p.routine_type, pd.description, p.prosrc, p.pronargs";
            step("describe-routines query", () -> {
                List<Map<String, Object>> r = metabaseQuery(c, sql);
                List<Object> schemas = new ArrayList<>();
                for (Map<String, Object> m : r) schemas.add(m.get("schema"));
                checkThat("no user routines in demo", !schemas.contains("demo"), schemas);
            });
        }
    }

    /** Queries of the shape Metabase's MBQL compiler emits (remark comment, quoted names, params). */
    static void metabaseQueries() throws Exception {
        try (Connection c = metabaseConnection()) {
            String remark = "-- Metabase:: userID: 1 queryType: MBQL queryHash: 0123456789abcdef\n";
            step("table rows sample (fingerprinting)", () -> {
                try (PreparedStatement ps = metabasePrepare(c, remark
                        + "SELECT \"demo\".\"orders\".\"o_orderkey\" AS \"o_orderkey\", \"demo\".\"orders\".\"o_totalprice\" AS \"o_totalprice\", "
                        + "\"demo\".\"orders\".\"o_orderdate\" AS \"o_orderdate\" FROM \"demo\".\"orders\" LIMIT 10000")) {
                    ps.setMaxRows(10000);
                    List<Map<String, Object>> r = records(ps.executeQuery());
                    check("sample rows", 10000, r.size());
                    if (!r.isEmpty()) check("sample columns", List.of("o_orderkey", "o_totalprice", "o_orderdate"), new ArrayList<>(r.get(0).keySet()));
                }
            });
            step("field values (distinct, ordered, limited)", () -> {
                List<Object> names = new ArrayList<>();
                for (Map<String, Object> m : metabaseQuery(c, remark
                        + "SELECT \"demo\".\"region\".\"r_name\" AS \"r_name\" FROM \"demo\".\"region\" "
                        + "GROUP BY \"demo\".\"region\".\"r_name\" ORDER BY \"demo\".\"region\".\"r_name\" ASC LIMIT 1000"))
                    names.add(m.get("r_name"));
                check("region names", List.of("AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"), names);
            });
            step("count by month with a date filter parameter", () -> {
                try (PreparedStatement ps = metabasePrepare(c, remark
                        + "SELECT CAST(DATE_TRUNC('month', \"demo\".\"orders\".\"o_orderdate\") AS date) AS \"o_orderdate\", COUNT(*) AS \"count\" "
                        + "FROM \"demo\".\"orders\" WHERE (\"demo\".\"orders\".\"o_orderdate\" >= ?) AND (\"demo\".\"orders\".\"o_orderdate\" < ?) "
                        + "AND (\"demo\".\"orders\".\"o_orderstatus\" = ?) "
                        + "GROUP BY CAST(DATE_TRUNC('month', \"demo\".\"orders\".\"o_orderdate\") AS date) "
                        + "ORDER BY CAST(DATE_TRUNC('month', \"demo\".\"orders\".\"o_orderdate\") AS date) ASC",
                        LocalDate.of(1995, 1, 1), LocalDate.of(1995, 4, 1), "F")) {
                    ps.setMaxRows(2000);
                    List<Map<String, Object>> r = records(ps.executeQuery());
                    List<Object> months = new ArrayList<>();
                    long total = 0;
                    for (Map<String, Object> m : r) {
                        Object d = m.get("o_orderdate");
                        months.add(d == null ? null : d.toString());
                        total += ((Number) m.get("count")).longValue();
                    }
                    check("months", List.of("1995-01-01", "1995-02-01", "1995-03-01"), months);
                    check("total count", scalar(c, "SELECT count(*) FROM demo.orders WHERE o_orderdate >= DATE '1995-01-01' "
                          + "AND o_orderdate < DATE '1995-04-01' AND o_orderstatus = 'F'"), total);
                }
            });
            step("timestamptz filter with OffsetDateTime parameters", () -> {
                List<Map<String, Object>> r = metabaseQuery(c, remark
                    + "SELECT COUNT(*) AS \"count\" FROM \"demo\".\"events\" WHERE (\"demo\".\"events\".\"ts\" >= ?) AND (\"demo\".\"events\".\"ts\" < ?)",
                    OffsetDateTime.parse("2026-01-03T00:00:00Z"), OffsetDateTime.parse("2026-01-04T00:00:00Z"));
                check("events on 2026-01-03", List.of(Map.of("count", scalar(c, "SELECT count(*) FROM demo.events WHERE dt = '2026-01-03'"))), r);
            });
            step("native query with a Statement (no parameters)", () -> {
                try (Statement st = c.createStatement(ResultSet.TYPE_FORWARD_ONLY, ResultSet.CONCUR_READ_ONLY, ResultSet.CLOSE_CURSORS_AT_COMMIT)) {
                    st.setFetchDirection(ResultSet.FETCH_FORWARD);
                    st.setFetchSize(500);
                    st.setMaxRows(2000);
                    checkThat("execute returns a result set", st.execute(remark + "SELECT n_name, n_regionkey FROM demo.nation ORDER BY n_nationkey"), "no result set");
                    List<List<Object>> r = rows(st.getResultSet());
                    check("nation rows", 25, r.size());
                }
            });
        }
    }

    // ---------------------------------------------------------------- main

    static final Map<String, Body> CASES = new LinkedHashMap<>();
    static {
        CASES.put("metabase_connect", MetabaseReplay::metabaseConnect);
        CASES.put("metabase_schemas_privileges", MetabaseReplay::metabaseSchemasAndPrivileges);
        CASES.put("metabase_tables", MetabaseReplay::metabaseTables);
        CASES.put("metabase_fields", MetabaseReplay::metabaseFields);
        CASES.put("metabase_fks", MetabaseReplay::metabaseFks);
        CASES.put("metabase_indexes", MetabaseReplay::metabaseIndexes);
        CASES.put("metabase_routines", MetabaseReplay::metabaseRoutines);
        CASES.put("metabase_queries", MetabaseReplay::metabaseQueries);
    }

    public static void main(String[] args) {
        run(args, CASES);
    }
}
