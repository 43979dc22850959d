// Shared by TarnJdbc and MetabaseReplay: soft checks, steps, connections, result helpers.
//
// Checks inside a case are soft: every mismatch prints a "FAIL ..." line and the case goes on, so
// one run shows everything that is wrong; a step that throws prints the SQLSTATE and the server's
// message. A case exits 0 only if nothing failed.

import java.sql.*;
import java.util.*;

class Harness {
    static String host;
    static int port;
    static int failures = 0;

    static final List<String> DEMO_TABLES = List.of(
        "customer", "events", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier");
    static final List<String> ORDERS_COLUMNS = List.of(
        "o_orderkey", "o_custkey", "o_orderstatus", "o_totalprice", "o_orderdate",
        "o_orderpriority", "o_clerk", "o_shippriority", "o_comment");

    interface Body { void run() throws Exception; }

    static String show(Object o) {
        if (o == null) return "null";
        if (o instanceof String) return "\"" + o + "\"";
        if (o instanceof Object[]) return Arrays.deepToString((Object[]) o);
        return o.toString();
    }

    static void check(String what, Object expected, Object actual) {
        if (Objects.equals(expected, actual)) {
            System.out.println("ok   " + what + " = " + show(actual));
        } else {
            failures++;
            System.out.println("FAIL " + what + ": expected " + show(expected) + ", got " + show(actual));
        }
    }

    static void checkThat(String what, boolean ok, Object detail) {
        if (ok) {
            System.out.println("ok   " + what);
        } else {
            failures++;
            System.out.println("FAIL " + what + ": " + show(detail));
        }
    }

    static String describe(Throwable t) {
        if (t instanceof SQLException) {
            SQLException e = (SQLException) t;
            return "SQLException [SQLSTATE " + e.getSQLState() + "] " + e.getMessage();
        }
        return t.toString();
    }

    /** Runs one step; an exception is a failure of that step only. */
    static void step(String what, Body body) {
        try {
            body.run();
        } catch (Throwable t) {
            failures++;
            System.out.println("FAIL " + what + ": " + describe(t));
        }
    }

    static Connection connect(String params) throws SQLException {
        return connect(params, new Properties());
    }

    static Connection connect(String params, Properties props) throws SQLException {
        String url = "jdbc:postgresql://" + host + ":" + port + "/tarn?" + params;
        props.putIfAbsent("user", "tarn");
        props.putIfAbsent("password", "x");
        props.putIfAbsent("connectTimeout", "10");
        props.putIfAbsent("socketTimeout", "120");
        return DriverManager.getConnection(url, props);
    }

    static List<List<Object>> rows(ResultSet rs) throws SQLException {
        List<List<Object>> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) row.add(rs.getObject(i));
            out.add(row);
        }
        rs.close();
        return out;
    }

    static List<List<Object>> query(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement()) {
            return rows(st.executeQuery(sql));
        }
    }

    static Object scalar(Connection c, String sql) throws SQLException {
        List<List<Object>> r = query(c, sql);
        if (r.size() != 1) throw new AssertionError("expected one row from " + sql + ", got " + r);
        return r.get(0).get(0);
    }

    static List<Object> column(List<List<Object>> rows, int i) {
        List<Object> out = new ArrayList<>();
        for (List<Object> r : rows) out.add(r.get(i));
        return out;
    }

    static List<Map<String, Object>> records(ResultSet rs) throws SQLException {
        List<Map<String, Object>> out = new ArrayList<>();
        ResultSetMetaData md = rs.getMetaData();
        while (rs.next()) {
            Map<String, Object> m = new LinkedHashMap<>();
            for (int i = 1; i <= md.getColumnCount(); i++) m.put(md.getColumnLabel(i), rs.getObject(i));
            out.add(m);
        }
        rs.close();
        return out;
    }

    static void expectSqlState(String what, String state, Body body) {
        try {
            body.run();
            failures++;
            System.out.println("FAIL " + what + ": expected SQLSTATE " + state + ", but it succeeded");
        } catch (SQLException e) {
            check(what + " SQLSTATE (" + e.getMessage().split("\n")[0] + ")", state, e.getSQLState());
        } catch (Throwable t) {
            failures++;
            System.out.println("FAIL " + what + ": expected SQLSTATE " + state + ", got " + describe(t));
        }
    }

    static void stillUsable(Connection c, String after) {
        step("connection usable after " + after, () ->
            check("SELECT count(*) FROM demo.region after " + after, 5L,
                  scalar(c, "SELECT count(*) FROM demo.region")));
    }

    static Object scalarOf(ResultSet rs) throws SQLException {
        List<List<Object>> r = rows(rs);
        if (r.size() != 1) throw new AssertionError("expected one row, got " + r);
        return r.get(0).get(0);
    }

    /** `java <Program> <host> <port> <case>`, or `--list`. */
    static void run(String[] args, Map<String, Body> cases) {
        if (args.length == 1 && args[0].equals("--list")) {
            for (String k : cases.keySet()) System.out.println(k);
            return;
        }
        if (args.length != 3 || !cases.containsKey(args[2])) {
            System.err.println("usage: <host> <port> <case>  (cases: " + cases.keySet() + ")");
            System.exit(2);
        }
        host = args[0];
        port = Integer.parseInt(args[1]);
        // pgjdbc sends the JVM's zone as TimeZone at start-up: UTC, but +05:30 for the timezone case
        TimeZone.setDefault(TimeZone.getTimeZone(args[2].equals("timezone") ? "Asia/Kolkata" : "UTC"));
        step("case " + args[2], cases.get(args[2]));
        System.out.println(failures == 0 ? "PASSED " + args[2] : "FAILED " + args[2] + ": " + failures + " failure(s)");
        System.exit(failures == 0 ? 0 : 1);
    }
}
