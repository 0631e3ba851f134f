// How Grafana displays a panel's query result, by Grafana's own code (@grafana/data, Apache-2.0).
// stdin: JSON [{title, type: "stat" | "table" | "lines", fieldConfig, options, fields: [{name, type, values}]}]
// stdout: JSON [{title, values: [{name, text, color}]}]: for a stat, what getFieldDisplayValues gives
// (what the Stat panel draws, "No data" included); for a table, every cell through the field's display
// processor after the panel's byName overrides (the Table panel's cell text and colour); for "lines", how
// many lines a time series panel draws of it.
// Grafana's packages: tests/grafana's, or those of the folder INFLUX_ARCHIVE_GRAFANA_PACKAGES names (another
// version, tests/grafana/other-versions).
// @grafana/data reads a browser's window and navigator when it loads: minimal ones are given here; from
// Grafana 12 on it loads react-use too, which wants a document with a head, a history and a location.
globalThis.window = globalThis;
globalThis.navigator = { language: "en-US", languages: ["en-US"] };
globalThis.matchMedia = () => ({ matches: false, addListener() {}, removeListener() {} });
const element = () => ({ setAttribute() {}, appendChild() {}, sheet: { insertRule() {}, cssRules: [] } });
globalThis.document = { head: element(), body: element(), createElement: element, createTextNode: () => ({}),
  getElementsByTagName: () => [element()], addEventListener() {}, removeEventListener() {} };
globalThis.history = { pushState() {}, replaceState() {} };
globalThis.addEventListener = () => {};
globalThis.removeEventListener = () => {};
globalThis.location = { href: "http://localhost/", pathname: "/", search: "", hash: "" };

const packages = process.env.INFLUX_ARCHIVE_GRAFANA_PACKAGES || __dirname;
const grafana = require(require.resolve("@grafana/data", { paths: [packages] }));

const theme = grafana.createTheme();

function frameOf(panel) {
  return grafana.toDataFrame({ fields: panel.fields.map((f) => ({ name: f.name, type: f.type, values: f.values })) });
}

function shown(display) {
  return { text: grafana.formattedValueToString(display), color: display.color || null };
}

function stat(panel) {
  const values = grafana.getFieldDisplayValues({
    data: [frameOf(panel)], reduceOptions: panel.options.reduceOptions, fieldConfig: panel.fieldConfig,
    replaceVariables: (s) => s, theme, timeZone: "utc",
  });
  return values.map((v) => ({ name: v.display.title || v.name, ...shown(v.display) }));
}

// the byName overrides as Grafana merges them into a field's config ("custom.x" into config.custom)
function configOf(name, fieldConfig) {
  const config = JSON.parse(JSON.stringify(fieldConfig.defaults || {}));
  for (const override of fieldConfig.overrides || []) {
    if (override.matcher.id !== "byName" || override.matcher.options !== name) continue;
    for (const { id, value } of override.properties) {
      if (id.startsWith("custom.")) {
        config.custom = { ...(config.custom || {}), [id.slice(7)]: value };
      } else {
        config[id] = value;
      }
    }
  }
  return config;
}

function table(panel) {
  const frame = frameOf(panel);
  const out = [];
  for (const field of frame.fields) {
    field.config = configOf(field.name, panel.fieldConfig);
    const display = grafana.getDisplayProcessor({ field, theme, timeZone: "utc" });
    for (let i = 0; i < field.values.length; i++) {
      out.push({ name: field.name, ...shown(display(field.values[i])) });
    }
  }
  return out;
}

// a time series as the Time series panel prepares it (its prepareGraphableFields: applyNullInsertThreshold, the
// "Disconnect values" option, inserts a null after each gap wider than custom.insertNulls), then the lines it
// draws: runs of values between nulls (spanNulls false draws no line across a null)
function lines(panel) {
  const frame = frameOf(panel);
  for (const field of frame.fields) field.config = configOf(field.name, panel.fieldConfig);
  const prepared = grafana.applyNullInsertThreshold({ frame });
  const values = prepared.fields.find((f) => f.type !== "time").values;
  const spans = values.reduce((n, v, i) => n + (v != null && (i === 0 || values[i - 1] == null) ? 1 : 0), 0);
  return [{ name: "lines", text: String(spans), color: null }];
}

const panels = JSON.parse(require("fs").readFileSync(0, "utf8"));
const shows = { stat, table, lines };
const result = panels.map((p) => ({ title: p.title, values: shows[p.type](p) }));
// the hex of every colour name the panels use, as the theme resolves it
const colours = {};
for (const p of panels) {
  for (const c of p.colours || []) colours[c] = theme.visualization.getColorByName(c);
}
process.stdout.write(JSON.stringify({ panels: result, colours }));
