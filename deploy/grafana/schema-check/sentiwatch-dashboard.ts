// The type every sentiwatch dashboard JSON must satisfy: Grafana's own dashboard schema (@grafana/schema),
// adjusted only where JSON cannot express what TypeScript means. The test generates one file per dashboard,
// `const dashboard: SentiwatchDashboard = <the JSON>;`, and runs `tsc --noEmit` on it.
import type { AnnotationQuery, Dashboard, DataQuery } from '@grafana/schema';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

// Grafana types enumerations such as FieldColorModeId as TypeScript string enums, which only their own
// members satisfy; JSON holds their string values. `${E}` turns an enum into the union of those values,
// so a misspelt value still fails.
export type FromJson<T> = T extends string
  ? `${T}`
  : T extends ReadonlyArray<infer Item>
    ? Array<FromJson<Item>>
    : T extends object
      ? { [Key in keyof T]: FromJson<T[Key]> }
      : T;

// The Prometheus data source keeps its annotation query in `target` and its display options beside it
// (titleFormat, tagKeys, ...); the dashboard schema leaves data-source-specific fields out, so they are
// declared here, typed, rather than allowing any field.
interface PrometheusAnnotationTarget extends DataQuery {
  expr: string;
  interval?: string;
}

interface PrometheusAnnotation extends AnnotationQuery<PrometheusAnnotationTarget> {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
}

export type SentiwatchDashboard = FromJson<
  Omit<Dashboard, 'annotations'> & { annotations?: { list?: PrometheusAnnotation[] } }
>;

// The dashboard schema leaves a panel's `options` and `fieldConfig.defaults.custom` open (their shape depends
// on the panel plugin); each panel plugin publishes its own types, keyed here by the panel's `type`. The test
// checks every panel's options against these, and fails on a panel type missing here.
export interface PanelConfigs {
  stat: { options: FromJson<Stat.Options> };
  table: { options: FromJson<Table.Options>; custom?: FromJson<Table.FieldConfig> };
  timeseries: { options: FromJson<TimeSeries.Options>; custom?: FromJson<TimeSeries.FieldConfig> };
}
