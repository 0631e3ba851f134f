"""A dashboard's JSON checked against Grafana's own types (@grafana/schema, Apache-2.0, the version
tests/grafana/package.json pins, or another of tests/grafana/versions/) by TypeScript's compiler under
--strict: every panel's options and custom field config as its panel plugin declares them, the dashboard
model as the dashboard kind does.

JSON holds an enum member as its value, so the check compares against each type with its string enums
as their values (`Json<T>`), every property optional: Grafana fills what a panel leaves out with the
plugin's defaults, so a key left out is no error, but a key that is not there (a misspelling, one in the
wrong place) or a value of the wrong kind is."""

import json
import os
import subprocess

from tests.support.harness import ROOT

GRAFANA = os.path.join(ROOT, "tests", "grafana")
# the folder whose node_modules holds Grafana's packages: tests/grafana's (the suite's version), or one of
# tests/grafana/versions/ (tests/grafana/other-versions sets it)
PACKAGES = os.environ.get("INFLUX_ARCHIVE_GRAFANA_PACKAGES") or GRAFANA
NODE_MODULES = os.path.join(PACKAGES, "node_modules")
_PLUGIN = "@grafana/schema/dist/esm/raw/composable/{0}/panelcfg/x/{1}PanelCfg_types.gen"
# panel type -> (its options type, its custom field config type); stat declares no custom field config
PANEL_TYPES = {"stat": ("StatOptions", "Record<string, never>"), "table": ("TableOptions", "TableFieldConfig"),
               "timeseries": ("TimeSeriesOptions", "TimeSeriesFieldConfig & Disconnect")}

_HEAD = f"""import type {{ Dashboard, FieldConfig, FieldConfigSource, Panel, VariableModel }} from "@grafana/schema";
import type {{ Options as StatOptions }} from "{_PLUGIN.format("stat", "Stat")}";
import type {{ Options as TableOptions, FieldConfig as TableFieldConfig }} from "{_PLUGIN.format("table", "Table")}";
import type {{ Options as TimeSeriesOptions, FieldConfig as TimeSeriesFieldConfig }}
  from "{_PLUGIN.format("timeseries", "TimeSeries")}";

// the type as JSON holds it: each string enum as its values, each property optional (Grafana's defaults)
type Json<T> = T extends string ? `${{T}}` : T extends Array<infer E> ? Array<Json<E>>
  : T extends object ? {{ [K in keyof T]?: Json<T[K]> }} : T;
// @grafana/schema's Panel leaves options and custom field config open (Record<string, unknown>): here they
// are the panel plugin's own types, so a misspelt or misplaced key there is an error too
type Checked<O, F> = Json<Omit<Panel, "options" | "fieldConfig"> & {{ options: O; fieldConfig: {{
  defaults: Omit<FieldConfig, "custom"> & {{ custom: F }}; overrides: FieldConfigSource["overrides"] }} }}>;
// a query variable's `definition` (the query as the editor shows it) is in @grafana/data's
// QueryVariableModel, not in @grafana/schema's VariableModel; so is `includeAll` up to Grafana 10
type Variable = Json<VariableModel> & {{ definition?: string; includeAll?: boolean }};
// a time series' "Disconnect values" (custom.insertNulls), which @grafana/data's applyNullInsertThreshold reads
// in 10.3 already, is not in 10.3's @grafana/schema (11.6's GraphFieldConfig has it)
type Disconnect = {{ insertNulls?: boolean | number }};
"""


def typescript_of(dashboard):
    """The TypeScript that types each panel, the variables and the rest of the dashboard (the import
    dialog's __inputs and __requires are not the dashboard model)."""
    lines = [_HEAD]
    for index, panel in enumerate(dashboard["panels"]):
        options, custom = PANEL_TYPES[panel["type"]]
        lines.append(f"export const panel{index}: Checked<{options}, {custom}> = {json.dumps(panel, indent=1)};")
    variables = dashboard.get("templating", {}).get("list", [])
    lines.append(f"export const variables: Variable[] = {json.dumps(variables, indent=1)};")
    model = {k: v for k, v in dashboard.items() if not k.startswith("__") and k not in ("panels", "templating")}
    lines.append(f'export const dashboard: Json<Omit<Dashboard, "panels" | "templating">> = '
                 f"{json.dumps(model, indent=1)};")
    return "\n".join(lines) + "\n"


def tsc(dashboard, workdir):
    """(exit code, what tsc said) for the dashboard's TypeScript under --strict."""
    source = os.path.join(workdir, "dashboard.ts")
    with open(source, "w", encoding="utf-8") as handle:
        handle.write(typescript_of(dashboard))
    config = {"compilerOptions": {"strict": True, "noEmit": True, "skipLibCheck": True, "target": "es2020",
                                  "module": "commonjs", "moduleResolution": "node10", "baseUrl": NODE_MODULES,
                                  "types": []},
              "files": [source]}
    with open(os.path.join(workdir, "tsconfig.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    out = subprocess.run(["node", os.path.join(NODE_MODULES, "typescript", "bin", "tsc"), "-p", workdir],
                         capture_output=True, text=True, timeout=300)
    return out.returncode, out.stdout + out.stderr
