// Compile logic of the HandCap Flamenco job type against a small fake of Flamenco's documented authoring API
// (author.Task(name, type), author.Command(name, parameters), task.addCommand, task.addDependency,
// job.addTask, job.settings). Run: node --test farm/flamenco/
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

function load() {
  const author = {
    Task: (name, type) => ({
      name, type, commands: [], dependencies: [],
      addCommand(c) { this.commands.push(c); },
      addDependency(t) { this.dependencies.push(t); },
    }),
    Command: (name, parameters) => ({ name, parameters }),
  };
  const context = vm.createContext({ author });
  vm.runInContext(fs.readFileSync(path.join(__dirname, "handcap_convert.js"), "utf8"), context);
  // top-level const / function declarations live in the context's global scope
  return vm.runInContext("({ JOB_TYPE, compileJob, planChunks })", context);
}

// arrays made inside the script's context have that context's prototypes: compare plain copies
const plain = (x) => JSON.parse(JSON.stringify(x));

function compile(settings) {
  const { compileJob } = load();
  const job = { settings, tasks: [], addTask(t) { this.tasks.push(t); } };
  compileJob(job);
  return job.tasks;
}

const SETTINGS = {
  video: "/farm/footage/take_01.mp4", frame_count: 90, chunk_frames: 30, overlap: 10,
  output_dir: "/farm/out", format: "fbx", capture_args: "--fov 50", convert_args: "--no-smooth",
};

test("job type settings name every key compileJob reads", () => {
  const keys = load().JOB_TYPE.settings.map((s) => s.key);
  for (const k of Object.keys(SETTINGS)) assert.ok(keys.includes(k), k);
});

test("one blender task per chunk, each after its predecessor, then a merge depending on all of them", () => {
  const tasks = compile(SETTINGS);
  assert.deepStrictEqual(tasks.map((t) => t.name),
    ["chunk-1-of-4", "chunk-2-of-4", "chunk-3-of-4", "chunk-4-of-4", "merge-and-convert"]);
  assert.ok(tasks.every((t) => t.type === "blender" && t.commands.length === 1));
  const ranges = tasks.slice(0, 4).map((t) => {
    const a = t.commands[0].parameters.args;
    return a[a.indexOf("--frames") + 1];
  });
  assert.deepStrictEqual(ranges, ["0:30", "20:50", "40:70", "60:90"]);
  const merge = tasks[4];
  assert.deepStrictEqual(merge.dependencies, tasks.slice(0, 4));
  assert.strictEqual(tasks[0].dependencies.length, 0);
  for (let k = 1; k < 4; k++) assert.deepStrictEqual(tasks[k].dependencies, [tasks[k - 1]]);
});

test("chunk commands run blender -b -c handcap convert --chunk-out; the merge reads those files", () => {
  const tasks = compile(SETTINGS);
  const cmd = tasks[1].commands[0];
  assert.strictEqual(cmd.name, "blender-render");
  assert.strictEqual(cmd.parameters.exe, "{blender}");
  assert.deepStrictEqual(plain(cmd.parameters.argsBefore), ["-b"]);
  assert.deepStrictEqual(plain(cmd.parameters.args), [
    "-c", "handcap", "convert", "/farm/footage/take_01.mp4", "-o", "/farm/out", "--frames", "20:50",
    "--chunk-frames", "30", "--overlap", "10", "--chunk-out", "/farm/out/.handcap-chunks/take_01/chunk_0001.npz",
    "--after-chunk", "/farm/out/.handcap-chunks/take_01/chunk_0000.npz", "--fov", "50",
  ]);
  assert.ok(!tasks[0].commands[0].parameters.args.includes("--after-chunk"));
  const outs = tasks.slice(0, 4).map((t) => {
    const a = t.commands[0].parameters.args;
    return a[a.indexOf("--chunk-out") + 1];
  });
  assert.deepStrictEqual(plain(tasks[4].commands[0].parameters.args), ["-c", "handcap", "merge", ...outs,
    "-o", "/farm/out", "--format", "fbx", "--name", "take_01", "--no-smooth"]);
});

test("a clip shorter than a chunk is one chunk; bad chunk settings are refused", () => {
  assert.strictEqual(compile({ ...SETTINGS, frame_count: 25 }).length, 2);
  assert.throws(() => compile({ ...SETTINGS, overlap: 16 }), /overlap must be 1 \.\. 15/);
  assert.throws(() => compile({ ...SETTINGS, frame_count: 0 }), /frame_count/);
});

test("planChunks covers every frame, neighbours share exactly the overlap", () => {
  const { planChunks } = load();
  for (const [n, c, o] of [[1, 300, 30], [90, 60, 15], [1000, 300, 30], [301, 300, 30], [211, 60, 15]]) {
    const plan = planChunks(n, c, o);
    assert.strictEqual(plan[0].start, 0);
    assert.strictEqual(plan[plan.length - 1].stop, n);
    for (let k = 1; k < plan.length; k++) {
      assert.strictEqual(plan[k - 1].stop - plan[k].start, Math.min(o, plan[k - 1].stop - plan[k].start));
      assert.ok(plan[k].start < plan[k - 1].stop && plan[k].stop - plan[k].start > 0);
    }
  }
});
