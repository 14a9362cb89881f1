// The map's geometry: one projection for the province outlines and the markers, the outlines
// (china-provinces.json, shipped with the console: see china-provinces.md for its source and
// licence) and labels placed where they cover no marker.
import { svg } from "./core.js";

// Equirectangular, the longitude scaled at 36°N (China's middle latitude), fitted to a box
// around the provinces (73.6–134.8°E, 18.2–53.6°N) 800 units wide.
const LON0 = 73.2, LON1 = 135.2, LAT0 = 17.8, LAT1 = 53.9, PAD = 6;
const KX = Math.cos((36 * Math.PI) / 180);
const SCALE = (800 - 2 * PAD) / ((LON1 - LON0) * KX);
export const WIDTH = 800;
export const HEIGHT = Math.ceil((LAT1 - LAT0) * SCALE + 2 * PAD);

export function project(lat, lon) {
  return [(lon - LON0) * KX * SCALE + PAD, (LAT1 - lat) * SCALE + PAD];
}

let provinces = null;  // the outlines, loaded once

// The province outlines ({id, properties: {name, name_zh, label}, geometry}), or [] if the file
// cannot be read (the map then shows the markers alone).
export async function loadProvinces() {
  if (provinces === null) {
    try {
      const r = await fetch("/static/china-provinces.json");
      provinces = r.ok ? (await r.json()).features : [];
    } catch (e) {
      provinces = [];
    }
  }
  return provinces;
}

// The SVG path of a GeoJSON (Multi)Polygon, projected.
function pathOf(geometry) {
  const polygons = geometry.type === "MultiPolygon" ? geometry.coordinates : [geometry.coordinates];
  const ring = (points) => "M" + points.map(([lon, lat]) => project(lat, lon).map((v) => v.toFixed(1)).join(",")).join("L") + "Z";
  return polygons.map((rings) => rings.map(ring).join("")).join("");
}

// A <g> of the province outlines (each a path with its name as a tooltip).
export function provinceLayer(features) {
  return svg("g", { class: "provinces" }, ...features.map((f) => svg("path", {
    class: "province", d: pathOf(f.geometry), "data-province": f.id,
  }, svg("title", {}, `${f.properties.name} ${f.properties.name_zh}`))));
}

const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

// Place `labels` ([{text, cls, at: [x, y], offsets: [[dx, dy], ...]}], in priority order) on
// `root` (an <svg> in the document, so text can be measured): each at the first offset from
// its point where it covers none of `obstacles` ({x, y, w, h} boxes), no label placed before
// it and stays inside the map; a label with no such place is left out. Returns the boxes.
export function placeLabels(root, labels, obstacles) {
  const taken = [...obstacles];
  const placed = [];
  for (const label of labels) {
    const text = svg("text", { class: label.cls, x: 0, y: 0, "text-anchor": "middle" }, label.text);
    root.append(text);
    const bb = text.getBBox();  // at (0, 0): the offsets of the text's box from its anchor
    const spot = label.offsets.map(([dx, dy]) => {
      const [x, y] = [label.at[0] + dx, label.at[1] + dy];
      return { x, y, box: { x: x + bb.x - 1, y: y + bb.y - 1, w: bb.width + 2, h: bb.height + 2 } };
    }).find(({ box }) => box.x >= 0 && box.y >= 0 && box.x + box.w <= WIDTH && box.y + box.h <= HEIGHT
      && !taken.some((t) => overlaps(box, t)));
    if (!spot) { text.remove(); continue; }
    text.setAttribute("x", spot.x.toFixed(1));
    text.setAttribute("y", spot.y.toFixed(1));
    taken.push(spot.box);
    placed.push(spot.box);
  }
  return placed;
}

// Offsets to try around a point: on it, then rings of growing distance (above and below
// first: labels are wider than tall).
export function around(step, rings) {
  const out = [[0, 0]];
  for (let k = 1; k <= rings; k++) {
    const d = step * k;
    out.push([0, -d], [0, d], [-1.6 * d, 0], [1.6 * d, 0], [-1.6 * d, -d], [1.6 * d, -d], [-1.6 * d, d], [1.6 * d, d]);
  }
  return out;
}
