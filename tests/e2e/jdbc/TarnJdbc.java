// End-to-end checks of tarn through pgjdbc (the driver of Metabase, DBeaver and most JVM BI tools).
//
//   java -cp <classes>:/usr/share/java/postgresql.jar TarnJdbc <host> <port> <case>
//
// Each case is one scenario (see CASES); checks are soft (see Harness). Expected values are what
// PostgreSQL 15 + pgjdbc give for the same tables (bigint, integer, text, numeric(15,2), date,
// double precision, timestamptz).

import java.lang.reflect.Field;
import java.math.BigDecimal;
import java.sql.*;
import java.time.*;
import java.util.*;
import java.util.concurrent.*;

import org.postgresql.PGResultSetMetaData;
import org.postgresql.util.PGInterval;

public class TarnJdbc extends Harness {
    // A query that runs for minutes: 60175^2 rows through a join.
    static final String LONG_QUERY =
        "SELECT count(*) FROM demo.lineitem a CROSS JOIN demo.lineitem b WHERE a.l_partkey + b.l_partkey < 0";

    // ---------------------------------------------------------------- connection, DatabaseMetaData

    static void connectCase() throws Exception {
        try (Connection c = connect("ApplicationName=tarn-e2e")) {
            check("SELECT 1", 1, scalar(c, "SELECT CAST(1 AS int4)"));
            check("isValid(5) (empty extended-protocol query)", true, c.isValid(5));
            check("getCatalog()", "tarn", c.getCatalog());
            step("getSchema() (SELECT current_schema())", () -> check("getSchema()", "public", c.getSchema()));
            step("getTransactionIsolation() (SHOW TRANSACTION ISOLATION LEVEL)", () ->
                check("getTransactionIsolation()", Connection.TRANSACTION_READ_COMMITTED,
                      c.getTransactionIsolation()));
            step("SHOW TimeZone", () -> check("SHOW TimeZone (pgjdbc sent TimeZone=UTC at startup)",
                                              "UTC", scalar(c, "SHOW TimeZone")));
            step("SHOW application_name", () -> check("SHOW application_name", "tarn-e2e",
                                                       scalar(c, "SHOW application_name")));
            step("current_user", () -> check("SELECT current_user", "tarn", scalar(c, "SELECT current_user")));
            step("current_database()", () -> check("SELECT current_database()", "tarn",
                                                     scalar(c, "SELECT current_database()")));
            step("version()", () -> {
                Object v = scalar(c, "SELECT version()");
                checkThat("SELECT version() starts with \"PostgreSQL \" (tools parse it)", String.valueOf(v).startsWith("PostgreSQL "), v);
            });
        }
    }

    static void dbmetaProduct() throws Exception {
        try (Connection c = connect("")) {
            DatabaseMetaData md = c.getMetaData();
            check("getDatabaseProductName", "PostgreSQL", md.getDatabaseProductName());
            String v = md.getDatabaseProductVersion();
            checkThat("getDatabaseProductVersion looks like a PostgreSQL version (" + v + ")",
                      v != null && v.matches("\\d+(\\.\\d+)*.*"), v);
            checkThat("getDatabaseMajorVersion >= 9", md.getDatabaseMajorVersion() >= 9, md.getDatabaseMajorVersion());
            check("getIdentifierQuoteString", "\"", md.getIdentifierQuoteString());
            check("getSearchStringEscape", "\\", md.getSearchStringEscape());
            check("supportsTransactions", true, md.supportsTransactions());
            check("supportsTransactionIsolationLevel(READ_UNCOMMITTED)", true,
                  md.supportsTransactionIsolationLevel(Connection.TRANSACTION_READ_UNCOMMITTED));
            check("getDefaultTransactionIsolation", Connection.TRANSACTION_READ_COMMITTED,
                  md.getDefaultTransactionIsolation());
            check("getUserName", "tarn", md.getUserName());
            check("supportsSchemasInTableDefinitions", true, md.supportsSchemasInTableDefinitions());
            check("storesLowerCaseIdentifiers", true, md.storesLowerCaseIdentifiers());
            step("getMaxColumnNameLength (pg_type 'name' typlen)", () ->
                check("getMaxColumnNameLength", 63, md.getMaxColumnNameLength()));
            step("getSQLKeywords (pg_get_keywords())", () -> {
                String kw = md.getSQLKeywords();
                checkThat("getSQLKeywords non-empty and lists 'limit'",
                          kw != null && Arrays.asList(kw.split(",")).contains("limit"), kw);
            });
            step("getTableTypes", () -> {
                List<Object> types = column(rows(md.getTableTypes()), 0);
                checkThat("getTableTypes has TABLE and VIEW", types.contains("TABLE") && types.contains("VIEW"), types);
            });
            step("getClientInfoProperties", () -> rows(md.getClientInfoProperties()));
        }
    }

    static void dbmetaSchemas() throws Exception {
        try (Connection c = connect("")) {
            DatabaseMetaData md = c.getMetaData();
            step("getSchemas()", () -> {
                List<List<Object>> r = rows(md.getSchemas());
                List<Object> names = column(r, 0);
                for (String s : List.of("demo", "public", "information_schema", "pg_catalog", "system"))
                    checkThat("getSchemas() has " + s, names.contains(s), names);
                for (List<Object> row : r)
                    if ("demo".equals(row.get(0))) check("getSchemas() TABLE_CATALOG of demo (pgjdbc leaves it null)", null, row.get(1));
            });
            step("getSchemas(null, \"de%\")", () ->
                check("getSchemas(null, \"de%\")", List.of("demo"), column(rows(md.getSchemas(null, "de%")), 0)));
            step("getCatalogs()", () -> {
                List<Object> cats = column(rows(md.getCatalogs()), 0);
                checkThat("getCatalogs() has tarn", cats.contains("tarn"), cats);
            });
        }
    }

    static List<String> tableNames(ResultSet rs, String wantType) throws SQLException {
        List<String> names = new ArrayList<>();
        while (rs.next()) {
            names.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
            if (wantType != null) check("TABLE_TYPE of " + rs.getString("TABLE_NAME"), wantType, rs.getString("TABLE_TYPE"));
        }
        rs.close();
        return names;
    }

    static void dbmetaTables() throws Exception {
        try (Connection c = connect("")) {
            DatabaseMetaData md = c.getMetaData();
            List<String> demo = new ArrayList<>();
            for (String t : DEMO_TABLES) demo.add("demo." + t);
            step("getTables(null, \"demo\", \"%\", null)", () ->
                check("getTables demo.%", demo, tableNames(md.getTables(null, "demo", "%", null), "TABLE")));
            step("getTables(..., {TABLE})", () ->
                check("getTables demo.% type TABLE", demo,
                      tableNames(md.getTables(null, "demo", "%", new String[] {"TABLE"}), "TABLE")));
            step("getTables demo.% type VIEW", () ->
                check("getTables demo.% type VIEW", List.of(),
                      tableNames(md.getTables(null, "demo", "%", new String[] {"VIEW"}), null)));
            step("getTables(null, null, \"orders\", null)", () ->
                check("getTables %.orders", List.of("demo.orders"), tableNames(md.getTables(null, null, "orders", null), "TABLE")));
            step("getTables(null, \"system\", \"%\", {VIEW})", () -> {
                List<String> views = tableNames(md.getTables(null, "system", "%", new String[] {"VIEW"}), "VIEW");
                checkThat("system has views, incl. system.partitions", views.contains("system.partitions"), views);
            });
            step("getTables system.% type TABLE", () ->
                check("getTables system.% type TABLE", List.of(),
                      tableNames(md.getTables(null, "system", "%", new String[] {"TABLE"}), null)));
            step("getTables row for demo.orders", () -> {
                try (ResultSet rs = md.getTables(null, "demo", "orders", null)) {
                    checkThat("a row", rs.next(), "no row");
                    check("TABLE_CAT (pgjdbc leaves it null)", null, rs.getString("TABLE_CAT"));
                    check("REMARKS", null, rs.getString("REMARKS"));
                }
            });
            // Metabase's list of types (describe-database) incl. types pgjdbc does not know.
            step("getTables with Metabase's type list", () ->
                check("getTables demo.% Metabase types", demo, tableNames(md.getTables(null, "demo", "%",
                    new String[] {"TABLE", "PARTITIONED TABLE", "VIEW", "FOREIGN TABLE", "MATERIALIZED VIEW",
                                  "EXTERNAL TABLE", "DYNAMIC_TABLE"}), "TABLE")));
        }
    }

    static void dbmetaColumns() throws Exception {
        try (Connection c = connect("")) {
            DatabaseMetaData md = c.getMetaData();
            step("getColumns(null, \"demo\", \"orders\", null)", () -> {
                List<Map<String, Object>> cols = records(md.getColumns(null, "demo", "orders", null));
                List<Object> names = new ArrayList<>(), typeNames = new ArrayList<>(), dataTypes = new ArrayList<>(),
                    positions = new ArrayList<>(), nullable = new ArrayList<>(), isNullable = new ArrayList<>();
                for (Map<String, Object> m : cols) {
                    names.add(m.get("COLUMN_NAME"));
                    typeNames.add(m.get("TYPE_NAME"));
                    dataTypes.add(((Number) m.get("DATA_TYPE")).intValue());
                    positions.add(((Number) m.get("ORDINAL_POSITION")).intValue());
                    nullable.add(((Number) m.get("NULLABLE")).intValue());
                    isNullable.add(m.get("IS_NULLABLE"));
                }
                check("COLUMN_NAME", ORDERS_COLUMNS, names);
                check("TYPE_NAME", List.of("int8", "int8", "text", "numeric", "date", "text", "text", "int4", "text"), typeNames);
                check("DATA_TYPE", List.of(Types.BIGINT, Types.BIGINT, Types.VARCHAR, Types.NUMERIC, Types.DATE,
                                           Types.VARCHAR, Types.VARCHAR, Types.INTEGER, Types.VARCHAR), dataTypes);
                check("ORDINAL_POSITION", List.of(1, 2, 3, 4, 5, 6, 7, 8, 9), positions);
                check("NULLABLE", Collections.nCopies(9, DatabaseMetaData.columnNoNulls), nullable);
                check("IS_NULLABLE", Collections.nCopies(9, "NO"), isNullable);
                if (cols.size() == 9) {
                    Map<String, Object> price = cols.get(3), key = cols.get(0), date = cols.get(4), text = cols.get(2);
                    check("o_totalprice COLUMN_SIZE (numeric(15,2))", 15, price.get("COLUMN_SIZE"));
                    check("o_totalprice DECIMAL_DIGITS", 2, price.get("DECIMAL_DIGITS"));
                    check("o_orderkey COLUMN_SIZE", 19, key.get("COLUMN_SIZE"));
                    check("o_orderdate COLUMN_SIZE", 13, date.get("COLUMN_SIZE"));
                    check("o_orderstatus COLUMN_SIZE (text)", 2147483647, text.get("COLUMN_SIZE"));
                    check("TABLE_CAT (pgjdbc leaves it null)", null, key.get("TABLE_CAT"));
                    check("TABLE_SCHEM", "demo", key.get("TABLE_SCHEM"));
                    check("TABLE_NAME", "orders", key.get("TABLE_NAME"));
                    check("COLUMN_DEF", null, key.get("COLUMN_DEF"));
                    check("IS_AUTOINCREMENT", "NO", key.get("IS_AUTOINCREMENT"));
                    check("IS_GENERATEDCOLUMN", "NO", key.get("IS_GENERATEDCOLUMN"));
                    check("REMARKS", null, key.get("REMARKS"));
                }
            });
            step("getColumns demo.events", () -> {
                Map<String, List<Object>> byName = new LinkedHashMap<>();
                for (Map<String, Object> m : records(md.getColumns(null, "demo", "events", null)))
                    byName.put((String) m.get("COLUMN_NAME"), List.of(m.get("TYPE_NAME"),
                        ((Number) m.get("DATA_TYPE")).intValue(), ((Number) m.get("NULLABLE")).intValue()));
                check("events columns", List.of("event_id", "user_id", "kind", "amount", "ts", "dt"), new ArrayList<>(byName.keySet()));
                check("events.amount (type, DATA_TYPE, NULLABLE)", List.of("float8", Types.DOUBLE, DatabaseMetaData.columnNullable), byName.get("amount"));
                check("events.ts", List.of("timestamptz", Types.TIMESTAMP, DatabaseMetaData.columnNoNulls), byName.get("ts"));
                check("events.dt", List.of("text", Types.VARCHAR, DatabaseMetaData.columnNoNulls), byName.get("dt"));
            });
            step("getColumns(null, \"demo\", \"%\", null) count", () ->
                check("columns in all demo tables", 67, records(md.getColumns(null, "demo", "%", null)).size()));
            step("getColumns with a column pattern", () -> {
                List<Object> names = new ArrayList<>();
                for (Map<String, Object> m : records(md.getColumns(null, "demo", "orders", "o\\_order%")))
                    names.add(m.get("COLUMN_NAME"));
                check("getColumns demo.orders.o\\_order%", List.of("o_orderkey", "o_orderstatus", "o_orderdate", "o_orderpriority"), names);
            });
        }
    }

    static void dbmetaKeys() throws Exception {
        try (Connection c = connect("")) {
            DatabaseMetaData md = c.getMetaData();
            step("getPrimaryKeys", () -> check("getPrimaryKeys demo.orders", 0, rows(md.getPrimaryKeys(null, "demo", "orders")).size()));
            step("getImportedKeys", () -> check("getImportedKeys demo.orders", 0, rows(md.getImportedKeys(null, "demo", "orders")).size()));
            step("getExportedKeys", () -> check("getExportedKeys demo.customer", 0, rows(md.getExportedKeys(null, "demo", "customer")).size()));
            step("getCrossReference", () -> check("getCrossReference customer->orders", 0,
                rows(md.getCrossReference(null, "demo", "customer", null, "demo", "orders")).size()));
            step("getIndexInfo", () -> check("getIndexInfo demo.orders", 0, rows(md.getIndexInfo(null, "demo", "orders", false, false)).size()));
            step("getIndexInfo unique", () -> check("getIndexInfo demo.orders unique", 0, rows(md.getIndexInfo(null, "demo", "orders", true, true)).size()));
            step("getBestRowIdentifier", () -> check("getBestRowIdentifier demo.orders", 0,
                rows(md.getBestRowIdentifier(null, "demo", "orders", DatabaseMetaData.bestRowSession, true)).size()));
        }
    }

    static void dbmetaTypeInfo() throws Exception {
        try (Connection c = connect("")) {
            DatabaseMetaData md = c.getMetaData();
            Map<String, Integer> types = new HashMap<>();
            try (ResultSet rs = md.getTypeInfo()) {
                while (rs.next()) types.put(rs.getString("TYPE_NAME"), rs.getInt("DATA_TYPE"));
            }
            Map<String, Integer> want = new LinkedHashMap<>();
            want.put("int2", Types.SMALLINT); want.put("int4", Types.INTEGER); want.put("int8", Types.BIGINT);
            want.put("text", Types.VARCHAR); want.put("varchar", Types.VARCHAR); want.put("numeric", Types.NUMERIC);
            want.put("date", Types.DATE); want.put("timestamp", Types.TIMESTAMP); want.put("timestamptz", Types.TIMESTAMP);
            want.put("bool", Types.BIT); want.put("float4", Types.REAL); want.put("float8", Types.DOUBLE);
            want.put("bytea", Types.BINARY); want.put("interval", Types.OTHER);
            for (Map.Entry<String, Integer> e : want.entrySet())
                check("getTypeInfo DATA_TYPE of " + e.getKey(), e.getValue(), types.get(e.getKey()));
        }
    }

    static void dbmetaFunctions() throws Exception {
        try (Connection c = connect("")) {
            DatabaseMetaData md = c.getMetaData();
            step("getFunctions(null, \"pg_catalog\", \"abs\")", () -> {
                List<Object> names = column(rows(md.getFunctions(null, "pg_catalog", "abs")), 2);
                checkThat("getFunctions pg_catalog.abs non-empty, all named abs",
                          !names.isEmpty() && new HashSet<>(names).equals(Set.of("abs")), names);
            });
            step("getFunctions(null, \"demo\", \"%\")", () ->
                check("getFunctions demo.%", 0, rows(md.getFunctions(null, "demo", "%")).size()));
            step("getProcedures(null, \"demo\", \"%\")", () ->
                check("getProcedures demo.%", 0, rows(md.getProcedures(null, "demo", "%")).size()));
            step("getFunctionColumns(null, \"pg_catalog\", \"abs\", \"%\")", () ->
                checkThat("getFunctionColumns pg_catalog.abs non-empty", !rows(md.getFunctionColumns(null, "pg_catalog", "abs", "%")).isEmpty(), "empty"));
        }
    }

    // ---------------------------------------------------------------- prepared statements

    static final String[] NATIONS = {"ALGERIA", "ARGENTINA", "BRAZIL", "CANADA", "EGYPT", "ETHIOPIA",
        "FRANCE", "GERMANY", "INDIA", "INDONESIA", "IRAN", "IRAQ", "JAPAN", "JORDAN", "KENYA", "MOROCCO",
        "MOZAMBIQUE", "PERU", "CHINA", "ROMANIA", "SAUDI ARABIA", "VIETNAM", "RUSSIA", "UNITED KINGDOM", "UNITED STATES"};

    /** Ten executions of one PreparedStatement: pgjdbc moves to a named server statement (and binary
     *  results) once prepareThreshold executions have happened. */
    static void preparedRepeated(String params) throws Exception {
        try (Connection c = connect(params)) {
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT n_name, n_regionkey FROM demo.nation WHERE n_nationkey = ?")) {
                long[] keys = {0, 1, 2, 24, 7, 8, 3, 0, 12, 24};
                for (int i = 0; i < keys.length; i++) {
                    final int run = i + 1;
                    final long key = keys[i];
                    step("execution " + run + " (n_nationkey = " + key + ")", () -> {
                        ps.setLong(1, key);
                        List<List<Object>> r = rows(ps.executeQuery());
                        check("execution " + run + " n_name for key " + key, List.of(NATIONS[(int) key]),
                              r.isEmpty() ? null : List.of(r.get(0).get(0)));
                        check("execution " + run + " row count", 1, r.size());
                    });
                }
            }
            // an int4 column, an int parameter, a count(*) result
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT count(*) FROM demo.orders WHERE o_shippriority = ? AND o_orderkey <= ?")) {
                for (int i = 1; i <= 8; i++) {
                    final int limit = i * 1000;
                    step("count execution " + i, () -> {
                        ps.setInt(1, 0);
                        ps.setLong(2, limit);
                        Object got = scalarOf(ps.executeQuery());
                        Object want = scalar(c, "SELECT count(*) FROM demo.orders WHERE o_shippriority = 0 AND o_orderkey <= " + limit);
                        check("count(*) with o_orderkey <= " + limit + " (prepared = literal)", want, got);
                    });
                }
            }
            stillUsable(c, "prepared statements");
        }
    }

    /** Every setXxx pgjdbc offers that BI tools use, ten times with different values. */
    static void paramTypes(String params) throws Exception {
        try (Connection c = connect(params)) {
            String sql = "SELECT CAST(? AS int4) AS i, CAST(? AS int8) AS l, CAST(? AS text) AS s, "
                + "CAST(? AS numeric) AS n, CAST(? AS date) AS d, CAST(? AS timestamp) AS ts, "
                + "CAST(? AS boolean) AS b, CAST(? AS float8) AS f, CAST(? AS int4) AS nul";
            try (PreparedStatement ps = c.prepareStatement(sql)) {
                for (int i = 0; i < 10; i++) {
                    final int k = i;
                    step("typed parameters, execution " + (k + 1), () -> {
                        BigDecimal dec = new BigDecimal("12345.67").add(BigDecimal.valueOf(k));
                        java.sql.Date day = java.sql.Date.valueOf(LocalDate.of(2024, 2, 20 + k % 9));
                        Timestamp ts = Timestamp.valueOf(LocalDateTime.of(2024, 1, 2, 3, 4, 5, 123456000).plusHours(k));
                        ps.setInt(1, 42 + k);
                        ps.setLong(2, 5_000_000_000L + k);
                        ps.setString(3, "héllo " + k);
                        ps.setBigDecimal(4, dec);
                        ps.setDate(5, day);
                        ps.setTimestamp(6, ts);
                        ps.setBoolean(7, k % 2 == 0);
                        ps.setDouble(8, 1.5 + k);
                        ps.setNull(9, Types.INTEGER);
                        try (ResultSet rs = ps.executeQuery()) {
                            checkThat("a row", rs.next(), "no row");
                            String p = "exec " + (k + 1) + " ";
                            check(p + "setInt", 42 + k, rs.getInt(1));
                            check(p + "setLong", 5_000_000_000L + k, rs.getLong(2));
                            check(p + "setString", "héllo " + k, rs.getString(3));
                            check(p + "setBigDecimal", 0, dec.compareTo(rs.getBigDecimal(4)));
                            check(p + "setDate", day.toLocalDate(), rs.getObject(5, LocalDate.class));
                            check(p + "setTimestamp", ts.toLocalDateTime(), rs.getObject(6, LocalDateTime.class));
                            check(p + "setBoolean", k % 2 == 0, rs.getBoolean(7));
                            check(p + "setDouble", 1.5 + k, rs.getDouble(8));
                            rs.getInt(9);
                            check(p + "setNull wasNull", true, rs.wasNull());
                        }
                    });
                }
            }
            // untyped parameters compared with table columns: the server infers the types
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT o_orderkey FROM demo.orders WHERE o_orderkey = ? AND o_totalprice = ? "
                    + "AND o_orderdate = ? AND o_orderstatus = ? AND o_shippriority = ?")) {
                for (int i = 0; i < 7; i++) {
                    final int k = i;
                    step("untyped parameters against columns, execution " + (k + 1), () -> {
                        ps.setLong(1, 1);
                        ps.setBigDecimal(2, new BigDecimal("172799.49"));
                        ps.setDate(3, java.sql.Date.valueOf("1996-01-02"));
                        ps.setString(4, "O");
                        ps.setInt(5, 0);
                        check("exec " + (k + 1) + " demo.orders row 1 found by its values", List.of(List.of(1L)), rows(ps.executeQuery()));
                    });
                }
            }
            // pgjdbc sends setTimestamp as an unspecified-type parameter; setObject with java.time
            // types sends timestamp / timestamptz / date (Metabase binds parameters this way).
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT count(*) FROM demo.events WHERE ts >= ? AND ts < ?")) {
                long want = (Long) scalar(c, "SELECT count(*) FROM demo.events WHERE dt = '2026-01-03'");
                for (int i = 0; i < 6; i++) {
                    final int k = i;
                    step("timestamptz column vs setTimestamp/setObject, execution " + (k + 1), () -> {
                        if (k % 2 == 0) {
                            ps.setTimestamp(1, Timestamp.from(Instant.parse("2026-01-03T00:00:00Z")));
                            ps.setTimestamp(2, Timestamp.from(Instant.parse("2026-01-04T00:00:00Z")));
                        } else {
                            ps.setObject(1, OffsetDateTime.parse("2026-01-03T00:00:00Z"), Types.TIMESTAMP_WITH_TIMEZONE);
                            ps.setObject(2, OffsetDateTime.parse("2026-01-04T00:00:00Z"), Types.TIMESTAMP_WITH_TIMEZONE);
                        }
                        check("exec " + (k + 1) + " events on 2026-01-03", want, scalarOf(ps.executeQuery()));
                    });
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT count(*) FROM demo.orders WHERE o_orderdate >= ? AND o_orderdate < ?")) {
                long want = (Long) scalar(c, "SELECT count(*) FROM demo.orders WHERE o_orderdate >= DATE '1995-01-01' AND o_orderdate < DATE '1995-02-01'");
                for (int i = 0; i < 6; i++) {
                    final int k = i;
                    step("date column vs setObject(LocalDate), execution " + (k + 1), () -> {
                        ps.setObject(1, LocalDate.of(1995, 1, 1), Types.DATE);
                        ps.setObject(2, LocalDate.of(1995, 2, 1), Types.DATE);
                        check("exec " + (k + 1) + " orders in January 1995", want, scalarOf(ps.executeQuery()));
                    });
                }
            }
            stillUsable(c, "parameter tests");
        }
    }

    // ---------------------------------------------------------------- portals: fetch size, max rows

    @SuppressWarnings("unchecked")
    static int rowsHeldByDriver(ResultSet rs) throws Exception {
        Field f = org.postgresql.jdbc.PgResultSet.class.getDeclaredField("rows");
        f.setAccessible(true);
        List<Object> rows = (List<Object>) f.get(rs.unwrap(org.postgresql.jdbc.PgResultSet.class));
        return rows == null ? -1 : rows.size();
    }

    static void fetchSize() throws Exception {
        try (Connection c = connect("")) {
            long total = (Long) scalar(c, "SELECT count(*) FROM demo.lineitem");
            BigDecimal sum = new BigDecimal(scalar(c, "SELECT sum(l_orderkey) FROM demo.lineitem").toString());
            check("count(*) lineitem", 60175L, total);
            c.setAutoCommit(false);
            for (String mode : List.of("Statement", "PreparedStatement")) {
                step(mode + " with setFetchSize(100)", () -> {
                    Statement st = mode.equals("Statement") ? c.createStatement()
                        : c.prepareStatement("SELECT * FROM demo.lineitem WHERE l_orderkey > ?");
                    st.setFetchSize(100);
                    ResultSet rs;
                    if (st instanceof PreparedStatement) {
                        ((PreparedStatement) st).setLong(1, 0);
                        rs = ((PreparedStatement) st).executeQuery();
                    } else {
                        rs = st.executeQuery("SELECT * FROM demo.lineitem");
                    }
                    long n = 0;
                    BigDecimal s = BigDecimal.ZERO;
                    int maxHeld = 0;
                    while (rs.next()) {
                        n++;
                        s = s.add(BigDecimal.valueOf(rs.getLong("l_orderkey")));
                        maxHeld = Math.max(maxHeld, rowsHeldByDriver(rs));
                    }
                    rs.close();
                    st.close();
                    check(mode + " rows read with fetch size 100", total, n);
                    check(mode + " sum(l_orderkey) read = sum by SQL", 0, sum.compareTo(s));
                    // The driver asks for 100 rows per Execute; a server that honours the row limit
                    // answers PortalSuspended and the driver never holds more than 100 rows.
                    checkThat(mode + " driver held at most 100 rows at a time (Execute row limit honoured, PortalSuspended)",
                              maxHeld <= 100, "held up to " + maxHeld + " rows at once");
                });
            }
            step("two interleaved cursors on one connection", () -> {
                Statement a = c.createStatement(), b = c.createStatement();
                a.setFetchSize(50);
                b.setFetchSize(50);
                ResultSet ra = a.executeQuery("SELECT o_orderkey FROM demo.orders ORDER BY o_orderkey");
                ResultSet rb = b.executeQuery("SELECT n_nationkey FROM demo.nation ORDER BY n_nationkey");
                long na = 0, nb = 0;
                boolean moreA = true, moreB = true;
                while (moreA || moreB) {
                    if (moreA && (moreA = ra.next())) na++;
                    if (moreB && (moreB = rb.next())) nb++;
                }
                check("interleaved cursor A rows", 15000L, na);
                check("interleaved cursor B rows", 25L, nb);
                a.close();
                b.close();
            });
            c.commit();
            c.setAutoCommit(true);
            stillUsable(c, "cursor reads");
        }
    }

    static void maxRows() throws Exception {
        try (Connection c = connect("")) {
            // Metabase: autocommit on, fetch size 500, setMaxRows(2000) -> Execute with max_rows 2000.
            step("setMaxRows(2000) autocommit on", () -> {
                PreparedStatement ps = c.prepareStatement("SELECT * FROM demo.lineitem",
                    ResultSet.TYPE_FORWARD_ONLY, ResultSet.CONCUR_READ_ONLY, ResultSet.CLOSE_CURSORS_AT_COMMIT);
                ps.setFetchSize(500);
                ps.setMaxRows(2000);
                ResultSet rs = ps.executeQuery();
                long n = 0;
                int held = -1;
                while (rs.next()) {
                    if (n == 0) held = rowsHeldByDriver(rs);
                    n++;
                }
                ps.close();
                check("rows with setMaxRows(2000)", 2000L, n);
                check("rows the server sent for Execute(max_rows=2000)", 2000, held);
            });
            stillUsable(c, "setMaxRows");
            step("setMaxRows(1200) + setFetchSize(500), autocommit off", () -> {
                c.setAutoCommit(false);
                Statement st = c.createStatement();
                st.setFetchSize(500);
                st.setMaxRows(1200);
                ResultSet rs = st.executeQuery("SELECT l_orderkey FROM demo.lineitem");
                long n = 0;
                int maxHeld = 0;
                while (rs.next()) {
                    n++;
                    maxHeld = Math.max(maxHeld, rowsHeldByDriver(rs));
                }
                st.close();
                c.commit();
                c.setAutoCommit(true);
                check("rows with setMaxRows(1200), fetch size 500", 1200L, n);
                checkThat("driver held at most 500 rows at a time", maxHeld <= 500, "held up to " + maxHeld);
            });
            stillUsable(c, "setMaxRows with cursor");
        }
    }

    // ---------------------------------------------------------------- result types

    static final String TYPES_SQL =
        "SELECT CAST(1 AS int2) AS i2, CAST(2 AS int4) AS i4, CAST(3 AS int8) AS i8, "
        + "CAST(1.5 AS float4) AS f4, CAST(2.25 AS float8) AS f8, CAST(12.34 AS numeric(10,2)) AS num, "
        + "CAST('abc' AS text) AS t, CAST('xyz' AS varchar) AS vc, true AS b, DATE '2024-02-29' AS d, "
        + "TIMESTAMP '2024-01-02 03:04:05.123456' AS ts, "
        + "CAST('2024-01-02 03:04:05.123456+00' AS timestamptz) AS tstz";
    static final String NULLS_SQL =
        "SELECT CAST(NULL AS int2) AS i2, CAST(NULL AS int4) AS i4, CAST(NULL AS int8) AS i8, "
        + "CAST(NULL AS float4) AS f4, CAST(NULL AS float8) AS f8, CAST(NULL AS numeric) AS num, "
        + "CAST(NULL AS text) AS t, CAST(NULL AS varchar) AS vc, CAST(NULL AS boolean) AS b, "
        + "CAST(NULL AS date) AS d, CAST(NULL AS timestamp) AS ts, CAST(NULL AS timestamptz) AS tstz";
    static final List<String> TYPE_NAMES = List.of("int2", "int4", "int8", "float4", "float8", "numeric",
        "text", "varchar", "bool", "date", "timestamp", "timestamptz");
    static final List<Integer> JDBC_TYPES = List.of(Types.SMALLINT, Types.INTEGER, Types.BIGINT, Types.REAL,
        Types.DOUBLE, Types.NUMERIC, Types.VARCHAR, Types.VARCHAR, Types.BIT, Types.DATE, Types.TIMESTAMP,
        Types.TIMESTAMP);
    // columns pgjdbc asks in binary when binary transfer is on (bool, text, varchar stay text)
    static final List<Integer> BINARY_FORMATS = List.of(1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1);

    static void resultTypes(String params, boolean binary) throws Exception {
        try (Connection c = connect(params)) {
            // Run each query twice so the second run is on a server-prepared statement too.
            for (int run = 1; run <= 2; run++) {
                final String r = "run " + run + " ";
                step(r + TYPES_SQL, () -> {
                    try (PreparedStatement ps = c.prepareStatement(TYPES_SQL); ResultSet rs = ps.executeQuery()) {
                        ResultSetMetaData md = rs.getMetaData();
                        List<Object> names = new ArrayList<>(), types = new ArrayList<>(), labels = new ArrayList<>(), formats = new ArrayList<>();
                        for (int i = 1; i <= md.getColumnCount(); i++) {
                            names.add(md.getColumnTypeName(i));
                            types.add(md.getColumnType(i));
                            labels.add(md.getColumnLabel(i));
                            formats.add(((PGResultSetMetaData) md).getFormat(i));
                        }
                        check(r + "getColumnLabel", List.of("i2", "i4", "i8", "f4", "f8", "num", "t", "vc", "b", "d", "ts", "tstz"), labels);
                        check(r + "getColumnTypeName", TYPE_NAMES, names);
                        check(r + "getColumnType", JDBC_TYPES, types);
                        check(r + "result formats (1 = binary)", binary ? BINARY_FORMATS : Collections.nCopies(12, 0), formats);
                        checkThat(r + "a row", rs.next(), "no row");
                        check(r + "int2 getObject", 1, rs.getObject(1));
                        check(r + "int4 getObject", 2, rs.getObject(2));
                        check(r + "int8 getObject", 3L, rs.getObject(3));
                        check(r + "float4 getObject", 1.5f, rs.getObject(4));
                        check(r + "float8 getObject", 2.25d, rs.getObject(5));
                        check(r + "numeric getObject", new BigDecimal("12.34"), rs.getObject(6));
                        check(r + "numeric getPrecision/getScale", List.of(10, 2), List.of(md.getPrecision(6), md.getScale(6)));
                        check(r + "text getObject", "abc", rs.getObject(7));
                        check(r + "varchar getObject", "xyz", rs.getObject(8));
                        check(r + "bool getObject", Boolean.TRUE, rs.getObject(9));
                        check(r + "date getObject class", java.sql.Date.class, rs.getObject(10).getClass());
                        check(r + "date as LocalDate", LocalDate.of(2024, 2, 29), rs.getObject(10, LocalDate.class));
                        check(r + "date getString", "2024-02-29", rs.getString(10));
                        check(r + "timestamp getObject class", Timestamp.class, rs.getObject(11).getClass());
                        check(r + "timestamp as LocalDateTime", LocalDateTime.of(2024, 1, 2, 3, 4, 5, 123456000), rs.getObject(11, LocalDateTime.class));
                        check(r + "timestamptz getObject class", Timestamp.class, rs.getObject(12).getClass());
                        check(r + "timestamptz instant", Instant.parse("2024-01-02T03:04:05.123456Z"), rs.getObject(12, OffsetDateTime.class).toInstant());
                        check(r + "timestamptz getString (session TimeZone UTC)", "2024-01-02 03:04:05.123456+00", rs.getString(12));
                    }
                });
                step(r + "SELECT INTERVAL '1 day 2 hours'", () -> {
                    try (PreparedStatement ps = c.prepareStatement("SELECT INTERVAL '1 day 2 hours' AS iv, CAST(NULL AS interval) AS n");
                         ResultSet rs = ps.executeQuery()) {
                        check(r + "interval getColumnTypeName", "interval", rs.getMetaData().getColumnTypeName(1));
                        checkThat(r + "a row", rs.next(), "no row");
                        Object iv = rs.getObject(1);
                        check(r + "interval getObject class", PGInterval.class, iv == null ? null : iv.getClass());
                        check(r + "interval getString", "1 day 02:00:00", rs.getString(1));
                        if (iv instanceof PGInterval)
                            check(r + "interval days/hours", List.of(1, 2), List.of(((PGInterval) iv).getDays(), ((PGInterval) iv).getHours()));
                        check(r + "NULL interval", null, rs.getObject(2));
                        check(r + "interval getColumnType (pgjdbc looks the type up in pg_type)", Types.OTHER, rs.getMetaData().getColumnType(1));
                    }
                });
                step(r + "SELECT ARRAY[1,2,3]", () -> {
                    try (PreparedStatement ps = c.prepareStatement("SELECT ARRAY[1,2,3] AS arr"); ResultSet rs = ps.executeQuery()) {
                        check(r + "array getColumnTypeName", "_int4", rs.getMetaData().getColumnTypeName(1));
                        check(r + "array getColumnType", Types.ARRAY, rs.getMetaData().getColumnType(1));
                        checkThat(r + "a row", rs.next(), "no row");
                        Array a = rs.getArray(1);
                        List<Long> values = new ArrayList<>();
                        if (a != null) for (Object o : (Object[]) a.getArray()) values.add(((Number) o).longValue());
                        check(r + "array element values", List.of(1L, 2L, 3L), values);
                    }
                });
                step(r + "SELECT ARRAY['a','b']", () -> {
                    try (PreparedStatement ps = c.prepareStatement("SELECT ARRAY[CAST('a' AS text), CAST('b' AS text)] AS arr"); ResultSet rs = ps.executeQuery()) {
                        check(r + "text array getColumnTypeName", "_text", rs.getMetaData().getColumnTypeName(1));
                        checkThat(r + "a row", rs.next(), "no row");
                        Array a = rs.getArray(1);
                        check(r + "text array elements", List.of("a", "b"), a == null ? null : Arrays.asList((Object[]) a.getArray()));
                    }
                });
                step(r + NULLS_SQL, () -> {
                    try (PreparedStatement ps = c.prepareStatement(NULLS_SQL); ResultSet rs = ps.executeQuery()) {
                        ResultSetMetaData md = rs.getMetaData();
                        List<Object> names = new ArrayList<>();
                        for (int i = 1; i <= md.getColumnCount(); i++) names.add(md.getColumnTypeName(i));
                        check(r + "NULL columns getColumnTypeName", TYPE_NAMES, names);
                        checkThat(r + "a row", rs.next(), "no row");
                        for (int i = 1; i <= md.getColumnCount(); i++) {
                            check(r + "NULL " + TYPE_NAMES.get(i - 1) + " getObject", null, rs.getObject(i));
                            check(r + "NULL " + TYPE_NAMES.get(i - 1) + " wasNull", true, rs.wasNull());
                        }
                    }
                });
                step(r + "demo.orders row 1", () -> {
                    try (PreparedStatement ps = c.prepareStatement(
                            "SELECT o_orderkey, o_totalprice, o_orderdate, o_orderstatus, o_shippriority FROM demo.orders WHERE o_orderkey = 1");
                         ResultSet rs = ps.executeQuery()) {
                        checkThat(r + "a row", rs.next(), "no row");
                        check(r + "o_orderkey", 1L, rs.getObject(1));
                        check(r + "o_totalprice", new BigDecimal("172799.49"), rs.getObject(2));
                        check(r + "o_orderdate", LocalDate.of(1996, 1, 2), rs.getObject(3, LocalDate.class));
                        check(r + "o_orderstatus", "O", rs.getObject(4));
                        check(r + "o_shippriority", 0, rs.getObject(5));
                    }
                });
            }
        }
    }

    static void columnLabels() throws Exception {
        String[][] cases = {
            {"SELECT count(*) FROM demo.region", "count"},
            {"SELECT COUNT(*) FROM demo.region", "count"},
            {"SELECT 1+1", "?column?"},
            {"SELECT 'a'", "?column?"},
            {"SELECT sum(r_regionkey) FROM demo.region", "sum"},
            {"SELECT max(r_name) FROM demo.region", "max"},
            {"SELECT min(r_regionkey) FROM demo.region", "min"},
            {"SELECT avg(r_regionkey) FROM demo.region", "avg"},
            {"SELECT upper(r_name) FROM demo.region", "upper"},
            {"SELECT CAST(r_regionkey AS text) FROM demo.region", "r_regionkey"},
            {"SELECT r_regionkey::text FROM demo.region", "r_regionkey"},
            {"SELECT r.r_name FROM demo.region r", "r_name"},
            {"SELECT coalesce(r_name, 'x') FROM demo.region", "coalesce"},
            {"SELECT CASE WHEN r_regionkey > 1 THEN 1 ELSE 0 END FROM demo.region", "case"},
            {"SELECT date_trunc('month', o_orderdate) FROM demo.orders LIMIT 1", "date_trunc"},
            {"SELECT count(*) AS \"Count\" FROM demo.region", "Count"},
            {"SELECT count(DISTINCT r_name) FROM demo.region", "count"},
        };
        try (Connection c = connect("")) {
            for (String[] k : cases) {
                step(k[0], () -> {
                    try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(k[0])) {
                        check("label of " + k[0], k[1], rs.getMetaData().getColumnLabel(1));
                    }
                });
            }
            step("count(*) type and value", () -> {
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM demo.region")) {
                    check("count(*) getColumnTypeName", "int8", rs.getMetaData().getColumnTypeName(1));
                    rs.next();
                    check("count(*) getObject", 5L, rs.getObject(1));
                }
            });
        }
    }

    static void resultSetMetadataOfTable() throws Exception {
        try (Connection c = connect("")) {
            step("ResultSetMetaData of demo.orders columns", () -> {
                try (PreparedStatement ps = c.prepareStatement(
                        "SELECT o_orderkey, o_totalprice, o_orderdate, o_orderstatus FROM demo.orders WHERE o_orderkey = ?")) {
                    ps.setLong(1, 1);
                    try (ResultSet rs = ps.executeQuery()) {
                        ResultSetMetaData md = rs.getMetaData();
                        PGResultSetMetaData pg = md.unwrap(PGResultSetMetaData.class);
                        check("getPrecision(o_totalprice)", 15, md.getPrecision(2));
                        check("getScale(o_totalprice)", 2, md.getScale(2));
                        check("getColumnName(1)", "o_orderkey", md.getColumnName(1));
                        check("getBaseSchemaName(1) (table OID in RowDescription)", "demo", pg.getBaseSchemaName(1));
                        check("getBaseTableName(1)", "orders", pg.getBaseTableName(1));
                        check("getBaseColumnName(2)", "o_totalprice", pg.getBaseColumnName(2));
                        check("isNullable(o_orderkey)", ResultSetMetaData.columnNoNulls, md.isNullable(1));
                        check("isAutoIncrement(o_orderkey)", false, md.isAutoIncrement(1));
                        check("getColumnClassName(o_totalprice)", "java.math.BigDecimal", md.getColumnClassName(2));
                        check("getColumnDisplaySize(o_orderdate)", 13, md.getColumnDisplaySize(3));
                    }
                }
            });
            step("ResultSetMetaData of demo.events", () -> {
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(
                        "SELECT event_id, amount, ts, dt FROM demo.events ORDER BY event_id LIMIT 1")) {
                    ResultSetMetaData md = rs.getMetaData();
                    check("events column types", List.of("int8", "float8", "timestamptz", "text"),
                          List.of(md.getColumnTypeName(1), md.getColumnTypeName(2), md.getColumnTypeName(3), md.getColumnTypeName(4)));
                    check("isNullable(amount)", ResultSetMetaData.columnNullable, md.isNullable(2));
                    check("isNullable(ts)", ResultSetMetaData.columnNoNulls, md.isNullable(3));
                }
            });
            step("a computed column has no base table", () -> {
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT CAST(1 AS int4) AS one")) {
                    check("getBaseTableName of a literal", "", rs.getMetaData().unwrap(PGResultSetMetaData.class).getBaseTableName(1));
                    check("isNullable of a literal", ResultSetMetaData.columnNullableUnknown, rs.getMetaData().isNullable(1));
                }
            });
        }
    }

    static void simpleQueryMode() throws Exception {
        // preferQueryMode=simple: no Parse/Bind, parameters inlined by the driver (pgbouncer set-ups).
        try (Connection c = connect("preferQueryMode=simple")) {
            step("simple mode query", () -> check("count(*) region", 5L, scalar(c, "SELECT count(*) FROM demo.region")));
            step("simple mode parameters", () -> {
                try (PreparedStatement ps = c.prepareStatement(
                        "SELECT n_name FROM demo.nation WHERE n_nationkey = ? AND n_name <> ? AND n_regionkey >= ?")) {
                    ps.setLong(1, 7);
                    ps.setString(2, "it's");
                    ps.setInt(3, 0);
                    check("n_name of nation 7", List.of(List.of("GERMANY")), rows(ps.executeQuery()));
                }
            });
            step("simple mode types", () -> {
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(TYPES_SQL)) {
                    List<Object> names = new ArrayList<>();
                    for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) names.add(rs.getMetaData().getColumnTypeName(i));
                    check("getColumnTypeName", TYPE_NAMES, names);
                    rs.next();
                    check("int8", 3L, rs.getObject(3));
                    check("numeric", new BigDecimal("12.34"), rs.getObject(6));
                    check("timestamptz", Instant.parse("2024-01-02T03:04:05.123456Z"), rs.getObject(12, OffsetDateTime.class).toInstant());
                }
            });
            step("simple mode: two statements in one string", () -> {
                try (Statement st = c.createStatement()) {
                    checkThat("first result is a result set", st.execute("SELECT CAST(1 AS int4) AS a; SELECT CAST(2 AS int4) AS b"), "no result set");
                    List<List<Object>> first = rows(st.getResultSet());
                    checkThat("there is a second result", st.getMoreResults(), "no second result");
                    List<List<Object>> second = rows(st.getResultSet());
                    check("both results", List.of(List.of(List.of(1)), List.of(List.of(2))), List.of(first, second));
                }
            });
        }
    }

    // ---------------------------------------------------------------- transactions

    /** Puts the connection back to autocommit, read-write, READ COMMITTED after a step. */
    static void reset(Connection c) {
        try { if (!c.getAutoCommit()) { c.rollback(); c.setAutoCommit(true); } } catch (SQLException ignored) { }
        try { c.setReadOnly(false); } catch (SQLException ignored) { }
        try { c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED); } catch (SQLException ignored) { }
    }

    static void txStep(Connection c, String what, Body body) {
        step(what, body);
        reset(c);
    }

    static void transactions() throws Exception {
        try (Connection c = connect("")) {
            txStep(c, "autocommit off: query, commit, query, rollback", () -> {
                c.setAutoCommit(false);
                check("in transaction: count region", 5L, scalar(c, "SELECT count(*) FROM demo.region"));
                c.commit();
                check("after commit: count nation", 25L, scalar(c, "SELECT count(*) FROM demo.nation"));
                c.rollback();
                check("after rollback: count region", 5L, scalar(c, "SELECT count(*) FROM demo.region"));
                c.commit();
                c.setAutoCommit(true);
            });
            txStep(c, "explicit BEGIN / COMMIT / START TRANSACTION / ROLLBACK statements", () -> {
                try (Statement st = c.createStatement()) {
                    st.execute("BEGIN");
                    check("inside BEGIN", 5L, scalar(c, "SELECT count(*) FROM demo.region"));
                    st.execute("COMMIT");
                    st.execute("START TRANSACTION");
                    st.execute("ROLLBACK");
                }
            });
            txStep(c, "setReadOnly(true) with autocommit off (BEGIN READ ONLY)", () -> {
                c.setReadOnly(true);
                c.setAutoCommit(false);
                check("read-only transaction query", 25L, scalar(c, "SELECT count(*) FROM demo.nation"));
                c.commit();
            });
            txStep(c, "SHOW transaction_read_only inside BEGIN READ ONLY", () -> {
                c.setReadOnly(true);
                c.setAutoCommit(false);
                check("SHOW transaction_read_only", "on", scalar(c, "SHOW transaction_read_only"));
                c.commit();
            });
            txStep(c, "setTransactionIsolation(SERIALIZABLE) (SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL ...)", () -> {
                c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
                check("getTransactionIsolation after SERIALIZABLE", Connection.TRANSACTION_SERIALIZABLE, c.getTransactionIsolation());
                c.setTransactionIsolation(Connection.TRANSACTION_READ_UNCOMMITTED);
                check("getTransactionIsolation after READ_UNCOMMITTED", Connection.TRANSACTION_READ_UNCOMMITTED, c.getTransactionIsolation());
            });
            txStep(c, "setTransactionIsolation(REPEATABLE_READ) with autocommit off", () -> {
                c.setAutoCommit(false);
                c.setTransactionIsolation(Connection.TRANSACTION_REPEATABLE_READ);
                check("query in the REPEATABLE READ transaction", 5L, scalar(c, "SELECT count(*) FROM demo.region"));
                check("getTransactionIsolation", Connection.TRANSACTION_REPEATABLE_READ, c.getTransactionIsolation());
                c.commit();
            });
            txStep(c, "setSavepoint / rollback(savepoint) / releaseSavepoint", () -> {
                c.setAutoCommit(false);
                scalar(c, "SELECT count(*) FROM demo.region");
                Savepoint sp = c.setSavepoint("s1");
                scalar(c, "SELECT count(*) FROM demo.nation");
                c.rollback(sp);
                c.releaseSavepoint(c.setSavepoint("s2"));
                check("query after savepoints", 5L, scalar(c, "SELECT count(*) FROM demo.region"));
                c.commit();
            });
            stillUsable(c, "transactions");
        }
        try (Connection c = connect("readOnlyMode=always")) {
            txStep(c, "readOnlyMode=always: setReadOnly(true) (SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY)", () -> {
                c.setReadOnly(true);
                check("query on a read-only session", 5L, scalar(c, "SELECT count(*) FROM demo.region"));
                c.setReadOnly(false);
            });
            txStep(c, "readOnlyMode=always: SHOW transaction_read_only", () -> {
                c.setReadOnly(true);
                check("SHOW transaction_read_only", "on", scalar(c, "SHOW transaction_read_only"));
                c.setReadOnly(false);
                check("SHOW transaction_read_only after setReadOnly(false)", "off", scalar(c, "SHOW transaction_read_only"));
            });
            stillUsable(c, "read-only session");
        }
    }

    static void errorInTransaction() throws Exception {
        try (Connection c = connect("")) {
            c.setAutoCommit(false);
            expectSqlState("error inside a transaction", "42P01", () -> scalar(c, "SELECT * FROM demo.no_such_table"));
            expectSqlState("next statement in the failed transaction", "25P02", () -> scalar(c, "SELECT count(*) FROM demo.region"));
            c.rollback();
            step("after rollback", () -> check("count region", 5L, scalar(c, "SELECT count(*) FROM demo.region")));
            c.commit();
            c.setAutoCommit(true);
        }
        try (Connection c = connect("autosave=always")) {
            c.setAutoCommit(false);
            expectSqlState("error with autosave=always", "42P01", () -> scalar(c, "SELECT * FROM demo.no_such_table"));
            step("autosave=always: the transaction goes on after an error (ROLLBACK TO SAVEPOINT)", () ->
                check("count region", 5L, scalar(c, "SELECT count(*) FROM demo.region")));
            c.commit();
            c.setAutoCommit(true);
        }
    }

    // ---------------------------------------------------------------- cancel, timeout, errors

    static String statementState(Statement st) throws Exception {
        Field f = org.postgresql.jdbc.PgStatement.class.getDeclaredField("statementState");
        f.setAccessible(true);
        return String.valueOf(f.get(st.unwrap(org.postgresql.jdbc.PgStatement.class)));
    }

    /** Runs the long query on another thread and calls Statement.cancel() from this one. */
    static void cancel() throws Exception {
        for (String mode : List.of("Statement", "PreparedStatement")) {
            try (Connection c = connect("socketTimeout=60")) {
                step(mode + ".cancel()", () -> {
                    Statement st = mode.equals("Statement") ? c.createStatement() : c.prepareStatement(LONG_QUERY);
                    ExecutorService ex = Executors.newSingleThreadExecutor();
                    Future<Object> f = ex.submit(() -> st instanceof PreparedStatement
                        ? ((PreparedStatement) st).executeQuery() : st.executeQuery(LONG_QUERY));
                    // The driver marks the statement IN_QUERY just before it writes the query.
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                    while (!statementState(st).equals("IN_QUERY") && !f.isDone() && System.nanoTime() < deadline)
                        Thread.onSpinWait();
                    check(mode + " statement state before cancel()", "IN_QUERY", statementState(st));
                    // Nothing on the wire says "the server has started": a CancelRequest that arrives
                    // before the query is read is ignored (as in PostgreSQL) and pgjdbc sends only one
                    // per execution. So give the server 1 s, as setQueryTimeout(1) does.
                    Thread.sleep(1000);
                    long t0 = System.nanoTime();
                    st.cancel();
                    Throwable thrown = null;
                    try {
                        f.get(30, TimeUnit.SECONDS);
                    } catch (TimeoutException te) {
                        thrown = te;
                    } catch (ExecutionException ee) {
                        thrown = ee.getCause();
                    }
                    double secs = (System.nanoTime() - t0) / 1e9;
                    checkThat(mode + " query ended within 30 s of cancel()", f.isDone(), "still running after " + secs + " s (CancelRequest not acted on)");
                    checkThat(mode + " cancelled query raised SQLException", thrown instanceof SQLException,
                              thrown == null ? "no exception (query completed)" : describe(thrown));
                    if (thrown instanceof SQLException)
                        check(mode + " SQLSTATE of cancelled query (" + thrown.getMessage() + ")", "57014", ((SQLException) thrown).getSQLState());
                    ex.shutdownNow();
                    if (f.isDone()) st.close();
                });
                if (!c.isClosed()) stillUsable(c, mode + ".cancel()");
            }
        }
    }

    static void queryTimeout() throws Exception {
        for (String mode : List.of("Statement", "PreparedStatement", "SET statement_timeout")) {
            try (Connection c = connect("socketTimeout=60")) {
                step(mode + " timeout of 1 s", () -> {
                    long t0 = System.nanoTime();
                    try (Statement st = mode.equals("PreparedStatement") ? c.prepareStatement(LONG_QUERY) : c.createStatement()) {
                        if (mode.equals("SET statement_timeout")) st.execute("SET statement_timeout = 1000");
                        else st.setQueryTimeout(1);
                        if (st instanceof PreparedStatement) ((PreparedStatement) st).executeQuery();
                        else st.executeQuery(LONG_QUERY);
                        failures++;
                        System.out.println("FAIL " + mode + ": the query completed instead of timing out");
                    } catch (SQLException e) {
                        double secs = (System.nanoTime() - t0) / 1e9;
                        check(mode + " SQLSTATE (" + e.getMessage() + ")", "57014", e.getSQLState());
                        checkThat(mode + " timed out within 30 s", secs < 30, secs + " s");
                    }
                });
                if (!c.isClosed()) {
                    if (mode.startsWith("SET")) step("RESET statement_timeout", () -> { try (Statement st = c.createStatement()) { st.execute("RESET statement_timeout"); } });
                    stillUsable(c, mode + " timeout");
                }
            }
        }
    }

    static void errors() throws Exception {
        String[][] cases = {
            {"SELECT no_such_fn(1)", "42883"},
            {"SELEC 1", "42601"},
            {"SELECT * FROM demo.no_such_table", "42P01"},
            {"SELECT nope FROM demo.region", "42703"},
            {"CREATE TRIGGER e2e_trigger AFTER INSERT ON demo.region FOR EACH ROW EXECUTE FUNCTION e2e_fn()", "0A000"},
            {"SELECT CAST('x' AS int4)", "22P02"},
            {"SELECT 1/0", "22012"},
        };
        try (Connection c = connect("")) {
            for (String[] k : cases) {
                expectSqlState("Statement: " + k[0], k[1], () -> { try (Statement st = c.createStatement()) { st.execute(k[0]); } });
                stillUsable(c, "error from " + k[0]);
                expectSqlState("PreparedStatement: " + k[0], k[1], () -> { try (PreparedStatement ps = c.prepareStatement(k[0])) { ps.execute(); } });
                stillUsable(c, "prepared error from " + k[0]);
            }
        }
        // after the switch to server-prepared statements too
        try (Connection c = connect("prepareThreshold=1")) {
            try (PreparedStatement ps = c.prepareStatement("SELECT n_name FROM demo.nation WHERE n_nationkey = 100 / ?")) {
                for (int i = 1; i <= 3; i++) {
                    final int k = i;
                    step("server-prepared statement run " + k, () -> { ps.setInt(1, 50); check("nation 2", List.of(List.of("BRAZIL")), rows(ps.executeQuery())); });
                    expectSqlState("server-prepared statement dividing by zero, run " + k, "22012", () -> { ps.setInt(1, 0); rows(ps.executeQuery()); });
                }
            }
            stillUsable(c, "errors of a server-prepared statement");
        }
    }

    static void timezone() throws Exception {
        // The JVM runs in Asia/Kolkata (+05:30) for this case: pgjdbc sends TimeZone=Asia/Kolkata.
        try (Connection c = connect("")) {
            step("SHOW TimeZone", () -> check("SHOW TimeZone", "Asia/Kolkata", scalar(c, "SHOW TimeZone")));
            step("timestamptz rendered in the session time zone", () -> {
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(
                        "SELECT CAST('2024-01-02 03:04:05+00' AS timestamptz) AS t")) {
                    rs.next();
                    check("getString", "2024-01-02 08:34:05+05:30", rs.getString(1));
                    check("instant", Instant.parse("2024-01-02T03:04:05Z"), rs.getObject(1, OffsetDateTime.class).toInstant());
                }
            });
            step("SET SESSION TIMEZONE TO 'UTC'", () -> {
                try (Statement st = c.createStatement()) { st.execute("SET SESSION TIMEZONE TO 'UTC';"); }
                check("SHOW TimeZone after SET", "UTC", scalar(c, "SHOW TimeZone"));
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(
                        "SELECT CAST('2024-01-02 03:04:05+00' AS timestamptz) AS t")) {
                    rs.next();
                    check("getString after SET TIMEZONE", "2024-01-02 03:04:05+00", rs.getString(1));
                }
            });
            step("events.ts instants do not depend on the session time zone", () -> {
                try (Statement st = c.createStatement()) {
                    st.execute("SET TIME ZONE 'America/New_York'");
                    Object first = scalar(c, "SELECT min(ts) FROM demo.events");
                    st.execute("SET TIME ZONE 'UTC'");
                    Object second = scalar(c, "SELECT min(ts) FROM demo.events");
                    check("min(ts) under two session time zones", ((Timestamp) second).toInstant(), ((Timestamp) first).toInstant());
                }
            });
        }
    }

    // ---------------------------------------------------------------- writes (on an empty warehouse)

    static void dmlBatch() throws Exception {
        try (Connection c = connect("")) {
            step("CREATE DATABASE / CREATE TABLE", () -> {
                try (Statement st = c.createStatement()) {
                    st.execute("CREATE DATABASE jdbc_e2e");
                    st.execute("CREATE TABLE jdbc_e2e.items (id BIGINT, name VARCHAR, price DOUBLE PRECISION)");
                }
            });
            step("Statement.executeUpdate(INSERT ... VALUES 3 rows)", () -> {
                try (Statement st = c.createStatement()) {
                    check("update count", 3, st.executeUpdate("INSERT INTO jdbc_e2e.items VALUES (1, 'a', 1.5), (2, 'b', 2.5), (3, NULL, NULL)"));
                }
            });
            step("PreparedStatement.executeUpdate", () -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_e2e.items VALUES (?, ?, ?)")) {
                    ps.setLong(1, 4);
                    ps.setString(2, "d");
                    ps.setDouble(3, 4.5);
                    check("update count", 1, ps.executeUpdate());
                }
            });
            // pgjdbc sends the whole batch (Parse/Bind/Execute x n) before one Sync
            step("PreparedStatement.executeBatch (10 rows)", () -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_e2e.items VALUES (?, ?, ?)")) {
                    for (long i = 5; i <= 14; i++) {
                        ps.setLong(1, i);
                        ps.setString(2, "n" + i);
                        if (i % 2 == 0) ps.setNull(3, Types.DOUBLE); else ps.setDouble(3, i);
                        ps.addBatch();
                    }
                    int[] counts = ps.executeBatch();
                    List<Integer> got = new ArrayList<>();
                    for (int n : counts) got.add(n);
                    check("batch update counts", Collections.nCopies(10, 1), got);
                }
            });
            step("read back the inserted rows", () ->
                check("count, sum(id), count(name), count(price)", List.of(List.of(14L, 105L, 13L, 8L)),
                      query(c, "SELECT count(*), CAST(sum(id) AS bigint), count(name), count(price) FROM jdbc_e2e.items")));
            // Metabase's CSV uploads: driver/insert-into! :postgres uses COPY ... FROM STDIN
            step("CopyManager.copyIn (COPY ... FROM STDIN)", () -> {
                org.postgresql.copy.CopyManager cm = c.unwrap(org.postgresql.PGConnection.class).getCopyAPI();
                long n = cm.copyIn("COPY \"jdbc_e2e\".\"items\" (\"id\", \"name\", \"price\") FROM STDIN NULL ''",
                                   new java.io.StringReader("15\tupload\t7.25\n16\t\t\n"));
                check("rows copied", 2L, n);
                check("copied rows", List.of(List.of(15L, "upload", 7.25d), Arrays.asList(16L, null, null)),
                      query(c, "SELECT id, name, price FROM jdbc_e2e.items WHERE id >= 15 ORDER BY id"));
            });
        }
    }

    // ---------------------------------------------------------------- main

    static final Map<String, Body> CASES = new LinkedHashMap<>();
    static {
        CASES.put("connect", TarnJdbc::connectCase);
        CASES.put("dbmeta_product", TarnJdbc::dbmetaProduct);
        CASES.put("dbmeta_schemas_catalogs", TarnJdbc::dbmetaSchemas);
        CASES.put("dbmeta_tables", TarnJdbc::dbmetaTables);
        CASES.put("dbmeta_columns", TarnJdbc::dbmetaColumns);
        CASES.put("dbmeta_keys_indexes", TarnJdbc::dbmetaKeys);
        CASES.put("dbmeta_typeinfo", TarnJdbc::dbmetaTypeInfo);
        CASES.put("dbmeta_functions", TarnJdbc::dbmetaFunctions);
        CASES.put("prepared_threshold_default", () -> preparedRepeated(""));
        CASES.put("prepared_threshold_1", () -> preparedRepeated("prepareThreshold=1"));
        CASES.put("prepared_threshold_0", () -> preparedRepeated("prepareThreshold=0"));
        CASES.put("prepared_force_binary", () -> preparedRepeated("prepareThreshold=-1&binaryTransfer=true"));
        CASES.put("param_types", () -> paramTypes(""));
        CASES.put("param_types_binary", () -> paramTypes("prepareThreshold=-1&binaryTransfer=true"));
        CASES.put("fetch_size_portal", TarnJdbc::fetchSize);
        CASES.put("max_rows", TarnJdbc::maxRows);
        CASES.put("result_types_text", () -> resultTypes("prepareThreshold=0", false));
        CASES.put("result_types_binary", () -> resultTypes("prepareThreshold=-1&binaryTransfer=true", true));
        CASES.put("column_labels", TarnJdbc::columnLabels);
        CASES.put("resultset_metadata", TarnJdbc::resultSetMetadataOfTable);
        CASES.put("simple_query_mode", TarnJdbc::simpleQueryMode);
        CASES.put("transactions", TarnJdbc::transactions);
        CASES.put("error_in_transaction", TarnJdbc::errorInTransaction);
        CASES.put("cancel", TarnJdbc::cancel);
        CASES.put("query_timeout", TarnJdbc::queryTimeout);
        CASES.put("errors", TarnJdbc::errors);
        CASES.put("timezone", TarnJdbc::timezone);
        CASES.put("dml_batch", TarnJdbc::dmlBatch);
    }

    public static void main(String[] args) {
        run(args, CASES);
    }
}
