// Command health judges live Kubernetes objects the way the two GitOps tools
// do: Flux, with kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), and
// Argo CD, with the project's Lua health checks run by gopher-lua, the Lua
// engine Argo CD embeds, in the environment Argo CD gives them.
//
//	health ARGOCD_CM_YAML < objects.json
//
// ARGOCD_CM_YAML is a ConfigMap holding
// `resource.customizations.health.<group>_<kind>` keys, as pasted into
// argocd-cm. The input is one JSON object or a List (`kubectl get -o json`).
// For every object it prints one tab-separated line:
//
//	<kind>/<name>	<kstatus status>	<Argo CD health>	<Argo CD message>
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) != 2 {
		fail("usage: health ARGOCD_CM_YAML < objects.json")
	}
	checks := loadChecks(os.Args[1])
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading standard input: %v", err)
	}
	// Decoded as client-go decodes objects (integers stay integers).
	decoded, err := runtime.Decode(unstructured.UnstructuredJSONScheme, input)
	if err != nil {
		fail("standard input is not a Kubernetes object or List: %v", err)
	}
	var items []*unstructured.Unstructured
	switch v := decoded.(type) {
	case *unstructured.UnstructuredList:
		for i := range v.Items {
			items = append(items, &v.Items[i])
		}
	case *unstructured.Unstructured:
		items = append(items, v)
	default:
		fail("unexpected %T", decoded)
	}
	for _, obj := range items {
		result, err := status.Compute(obj)
		if err != nil {
			fail("kstatus on %s/%s: %v", obj.GetKind(), obj.GetName(), err)
		}
		key := fmt.Sprintf("resource.customizations.health.%s_%s", obj.GroupVersionKind().Group, obj.GetKind())
		script, ok := checks[key]
		if !ok {
			fail("no Argo CD health check %s", key)
		}
		health, message := argoHealth(script, obj.Object)
		fmt.Printf("%s/%s\t%s\t%s\t%s\n", obj.GetKind(), obj.GetName(), result.Status, health, oneLine(message))
	}
}

// loadChecks reads the health-check scripts from a ConfigMap manifest.
func loadChecks(path string) map[string]string {
	text, err := os.ReadFile(path)
	if err != nil {
		fail("reading %s: %v", path, err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(text, &cm); err != nil {
		fail("parsing %s: %v", path, err)
	}
	return cm.Data
}

// argoHealth runs a health check as Argo CD does: a fresh Lua state with the
// base, table, string and math libraries, the object as the global `obj`,
// and the table the script returns read as {status, message}.
func argoHealth(script string, obj map[string]interface{}) (string, string) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		fail("the health check failed: %v", err)
	}
	result, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		fail("the health check returned %s, not a table", L.Get(-1).Type())
	}
	return lua.LVAsString(result.RawGetString("status")), lua.LVAsString(result.RawGetString("message"))
}

// toLua converts decoded JSON to Lua values the way Argo CD does: objects
// become tables keyed by string, arrays tables indexed from 1.
func toLua(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case map[string]interface{}:
		table := L.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(L, item))
		}
		return table
	case []interface{}:
		table := L.NewTable()
		for _, item := range v {
			table.Append(toLua(L, item))
		}
		return table
	default:
		fail("cannot convert %T to Lua", value)
		return lua.LNil
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "health: "+format+"\n", args...)
	os.Exit(2)
}
