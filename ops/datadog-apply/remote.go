package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
)

// remote finds, creates and updates objects through datadog-api-client-go.
type remote struct {
	dashboards *datadogV1.DashboardsApi
	monitors   *datadogV1.MonitorsApi
	slos       *datadogV1.ServiceLevelObjectivesApi

	// dashboardIDs maps a shoplab id to the ids of the dashboards whose
	// description carries it; listed once, on the first dashboard.
	dashboardIDs map[string][]string
}

func newRemote(c *datadog.APIClient) *remote {
	return &remote{
		dashboards: datadogV1.NewDashboardsApi(c),
		monitors:   datadogV1.NewMonitorsApi(c),
		slos:       datadogV1.NewServiceLevelObjectivesApi(c),
	}
}

// find returns the id of the remote object carrying o's stable id and that
// object as generic JSON, or "" when there is none. Two remote objects with
// the same id are an error: the tool would not know which one to update.
func (r *remote) find(ctx context.Context, o *object) (string, any, error) {
	tag := idPrefix + o.name
	switch o.kind {
	case kindDashboard:
		// The list (GET /api/v1/dashboard) returns each dashboard's
		// description but not its widgets: list once, then GET the match.
		if r.dashboardIDs == nil {
			if err := r.listDashboards(ctx); err != nil {
				return "", nil, err
			}
		}
		ids := r.dashboardIDs[o.name]
		if err := unique(o, ids); err != nil || len(ids) == 0 {
			return "", nil, err
		}
		d, _, err := r.dashboards.GetDashboard(ctx, ids[0])
		if err != nil {
			return "", nil, apiError("get dashboard "+ids[0], err)
		}
		have, err := generic(d)
		return ids[0], have, err

	case kindMonitor:
		ms, _, err := r.monitors.ListMonitors(ctx, *datadogV1.NewListMonitorsOptionalParameters().WithMonitorTags(tag))
		if err != nil {
			return "", nil, apiError("list monitors tagged "+tag, err)
		}
		var ids []string
		var match datadogV1.Monitor
		for _, m := range ms {
			if slices.Contains(m.Tags, tag) {
				ids, match = append(ids, strconv.FormatInt(m.GetId(), 10)), m
			}
		}
		if err := unique(o, ids); err != nil || len(ids) == 0 {
			return "", nil, err
		}
		have, err := generic(match)
		return ids[0], have, err

	case kindSLO:
		resp, _, err := r.slos.ListSLOs(ctx, *datadogV1.NewListSLOsOptionalParameters().WithTagsQuery(tag))
		if err != nil {
			return "", nil, apiError("list SLOs tagged "+tag, err)
		}
		var ids []string
		var match datadogV1.ServiceLevelObjective
		for _, s := range resp.Data {
			if slices.Contains(s.Tags, tag) {
				ids, match = append(ids, s.GetId()), s
			}
		}
		if err := unique(o, ids); err != nil || len(ids) == 0 {
			return "", nil, err
		}
		have, err := generic(match)
		return ids[0], have, err
	}
	return "", nil, fmt.Errorf("unknown kind %q", o.kind)
}

func (r *remote) listDashboards(ctx context.Context) error {
	r.dashboardIDs = map[string][]string{}
	items, cancel := r.dashboards.ListDashboardsWithPagination(ctx, *datadogV1.NewListDashboardsOptionalParameters().WithCount(100))
	defer cancel()
	for it := range items {
		if it.Error != nil {
			return apiError("list dashboards", it.Error)
		}
		for _, m := range idToken.FindAllStringSubmatch(it.Item.GetDescription(), -1) {
			r.dashboardIDs[m[1]] = append(r.dashboardIDs[m[1]], it.Item.GetId())
		}
	}
	return nil
}

func unique(o *object, ids []string) error {
	if len(ids) > 1 {
		return fmt.Errorf("%s: %d %ss carry %s%s (ids %s): delete all but one, then re-run",
			o.file, len(ids), o.kind, idPrefix, o.name, strings.Join(ids, ", "))
	}
	return nil
}

// create creates o and returns its new id.
func (r *remote) create(ctx context.Context, o *object) (string, error) {
	switch o.kind {
	case kindDashboard:
		var body datadogV1.Dashboard
		if err := json.Unmarshal(o.body, &body); err != nil {
			return "", err
		}
		d, _, err := r.dashboards.CreateDashboard(ctx, body)
		if err != nil {
			return "", apiError("create dashboard", err)
		}
		return d.GetId(), nil
	case kindMonitor:
		var body datadogV1.Monitor
		if err := json.Unmarshal(o.body, &body); err != nil {
			return "", err
		}
		m, _, err := r.monitors.CreateMonitor(ctx, body)
		if err != nil {
			return "", apiError("create monitor", err)
		}
		return strconv.FormatInt(m.GetId(), 10), nil
	case kindSLO:
		var body datadogV1.ServiceLevelObjectiveRequest
		if err := json.Unmarshal(o.body, &body); err != nil {
			return "", err
		}
		resp, _, err := r.slos.CreateSLO(ctx, body)
		if err != nil {
			return "", apiError("create SLO", err)
		}
		if len(resp.Data) != 1 {
			return "", fmt.Errorf("create SLO: the response holds %d SLOs, want 1", len(resp.Data))
		}
		return resp.Data[0].GetId(), nil
	}
	return "", fmt.Errorf("unknown kind %q", o.kind)
}

// update replaces the remote object id with o.
func (r *remote) update(ctx context.Context, o *object, id string) error {
	switch o.kind {
	case kindDashboard:
		var body datadogV1.Dashboard
		if err := json.Unmarshal(o.body, &body); err != nil {
			return err
		}
		_, _, err := r.dashboards.UpdateDashboard(ctx, id, body)
		return apiError("update dashboard "+id, err)
	case kindMonitor:
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return fmt.Errorf("monitor id %q: %w", id, err)
		}
		var body datadogV1.MonitorUpdateRequest
		if err := json.Unmarshal(o.body, &body); err != nil {
			return err
		}
		_, _, err = r.monitors.UpdateMonitor(ctx, n, body)
		return apiError("update monitor "+id, err)
	case kindSLO:
		var body datadogV1.ServiceLevelObjective
		if err := json.Unmarshal(o.body, &body); err != nil {
			return err
		}
		_, _, err := r.slos.UpdateSLO(ctx, id, body)
		return apiError("update SLO "+id, err)
	}
	return fmt.Errorf("unknown kind %q", o.kind)
}

// apiError names the call and adds the response body Datadog explains
// itself in (the client's error only says "400 Bad Request").
func apiError(what string, err error) error {
	if err == nil {
		return nil
	}
	var ge datadog.GenericOpenAPIError
	if errors.As(err, &ge) && len(ge.Body()) > 0 {
		body := strings.TrimSpace(string(ge.Body()))
		if len(body) > 500 {
			body = body[:500] + "..."
		}
		return fmt.Errorf("%s: %v: %s", what, err, body)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// reconcile plans every object (reading the remote state only), then, with
// apply, creates and updates what differs. It prints one line per object.
func reconcile(ctx context.Context, r *remote, objs []*object, apply bool, w io.Writer) error {
	type step struct {
		o      *object
		id     string
		fields []string
	}
	steps := make([]step, 0, len(objs))
	for _, o := range objs {
		id, have, err := r.find(ctx, o)
		if err != nil {
			return err
		}
		s := step{o: o, id: id}
		if id != "" {
			s.fields = diff(o.want, have)
		}
		steps = append(steps, s)
	}

	var created, updated, unchanged int
	for _, s := range steps {
		var line string
		switch {
		case s.id == "":
			line = "create"
			if apply {
				id, err := r.create(ctx, s.o)
				if err != nil {
					return fmt.Errorf("%s: %w", s.o.file, err)
				}
				line += ": created " + id
			}
			created++
		case len(s.fields) > 0:
			line = "update (fields: " + fieldList(s.fields) + ")"
			if apply {
				if err := r.update(ctx, s.o, s.id); err != nil {
					return fmt.Errorf("%s: %w", s.o.file, err)
				}
				line += ": updated " + s.id
			} else {
				line += " " + s.id
			}
			updated++
		default:
			line = "unchanged " + s.id
			unchanged++
		}
		fmt.Fprintf(w, "%-9s %-36s %s\n", s.o.kind, s.o.name, line)
	}
	if apply {
		fmt.Fprintf(w, "applied: %d created, %d updated, %d unchanged\n", created, updated, unchanged)
	} else {
		fmt.Fprintf(w, "dry run: %d to create, %d to update, %d unchanged; nothing written (-apply, or make datadog-apply APPLY=1, writes)\n",
			created, updated, unchanged)
	}
	return nil
}
