// SPDX-License-Identifier: GPL-3.0-or-later
// HandCap job type for Flamenco: one video -> overlapping chunks, each going on from the previous chunk's
// tracker state (so its landmarks are the whole clip's: the chunks of one video run in order, the videos of
// a library in parallel) -> one merge task that fits the whole clip and converts it (see docs/farm.md). Install: copy this file into the `scripts/` folder
// next to the flamenco-manager executable and restart the Manager.
//
// Each chunk task runs   blender -b -c handcap convert VIDEO -o OUT --frames A:B --chunk-out CHUNK
//                        [--after-chunk PREVIOUS_CHUNK] ...
// and the merge task     blender -b -c handcap merge CHUNK... -o OUT --format FMT
// on Workers that have Blender with the HandCap extension enabled (and its inference environment set up).
// Flamenco farms share storage, so the chunk files live under the output folder.

const JOB_TYPE = {
  label: "HandCap Convert",
  description: "Hand motion capture of one video, chunked over the farm, into a .blend / .fbx / .bvh / .glb",
  settings: [
    { key: "video", type: "string", subtype: "file_path", required: true,
      description: "The footage to capture (a path every Worker can read)" },
    { key: "frame_count", type: "int32", required: true,
      description: "Number of frames of the video (the chunks are planned from it)" },
    { key: "chunk_frames", type: "int32", default: 300,
      description: "Frames per chunk task" },
    { key: "overlap", type: "int32", default: 30,
      description: "Frames shared by neighbouring chunks (decides the hands' identities across the seam)" },
    { key: "output_dir", type: "string", subtype: "dir_path", required: true,
      description: "Folder for the result (and the chunk files, in .handcap-chunks/)" },
    { key: "format", type: "string", default: "blend", choices: ["blend", "fbx", "bvh", "glb"],
      description: "Output file type" },
    { key: "capture_args", type: "string", default: "",
      description: "Extra capture options for every chunk, e.g. '--fov 50 --hands 2'" },
    { key: "convert_args", type: "string", default: "",
      description: "Extra options of the merge's conversion, e.g. '--no-smooth --keep-captures'" },
  ],
};

// The same plan as inference/chunks.py plan_chunks (frame ranges [start, stop), stride 1).
function planChunks(frameCount, chunkFrames, overlap) {
  if (!Number.isInteger(chunkFrames) || chunkFrames < 2) {
    throw `chunk_frames must be an integer >= 2, got ${chunkFrames}`;
  }
  if (!Number.isInteger(overlap) || overlap < 1 || 2 * overlap > chunkFrames) {
    throw `overlap must be 1 .. ${Math.floor(chunkFrames / 2)} frames (half a chunk at most), got ${overlap}`;
  }
  if (!Number.isInteger(frameCount) || frameCount < 1) {
    throw `frame_count must be a positive integer, got ${frameCount}`;
  }
  const step = chunkFrames - overlap;
  const count = Math.max(1, Math.ceil((frameCount - overlap) / step));
  const chunks = [];
  for (let k = 0; k < count; k++) {
    const start = k * step;
    const stop = k === count - 1 ? frameCount : Math.min(start + chunkFrames, frameCount);
    chunks.push({ index: k, start: start, stop: stop });
  }
  return chunks;
}

function splitArgs(text) {
  return (text || "").split(" ").filter((a) => a.length > 0);
}

function baseName(path) {
  const name = path.replace(/\\/g, "/").split("/").pop();
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

function handcapCommand(args) {
  // {blender} / {blenderargs}: the Manager's variables for the Workers' Blender; no .blend file is opened
  return author.Command("blender-render", {
    exe: "{blender}",
    exeArgs: "{blenderargs}",
    argsBefore: ["-b"],
    blendfile: "",
    args: ["-c", "handcap"].concat(args),
  });
}

function compileJob(job) {
  const s = job.settings;
  const chunks = planChunks(s.frame_count, s.chunk_frames, s.overlap);
  const stem = baseName(s.video);
  const chunkDir = `${s.output_dir}/.handcap-chunks/${stem}`;
  const chunkFiles = [];
  const chunkTasks = [];
  for (const c of chunks) {
    const file = `${chunkDir}/chunk_${String(c.index).padStart(4, "0")}.npz`;
    const task = author.Task(`chunk-${c.index + 1}-of-${chunks.length}`, "blender");
    // a chunk goes on from the tracker state its predecessor wrote into its chunk file
    const after = c.index > 0 ? ["--after-chunk", chunkFiles[c.index - 1]] : [];
    task.addCommand(handcapCommand([
      "convert", s.video, "-o", s.output_dir,
      "--frames", `${c.start}:${c.stop}`,
      "--chunk-frames", String(s.chunk_frames), "--overlap", String(s.overlap),
      "--chunk-out", file,
    ].concat(after, splitArgs(s.capture_args))));
    if (c.index > 0) {
      task.addDependency(chunkTasks[c.index - 1]);
    }
    job.addTask(task);
    chunkTasks.push(task);
    chunkFiles.push(file);
  }
  const merge = author.Task("merge-and-convert", "blender");
  merge.addCommand(handcapCommand(
    ["merge"].concat(chunkFiles, ["-o", s.output_dir, "--format", s.format || "blend", "--name", stem],
      splitArgs(s.convert_args))
  ));
  for (const t of chunkTasks) {
    merge.addDependency(t);
  }
  job.addTask(merge);
}

// Flamenco's script engine has no modules; node's test runner loads this file in a context of its own.
