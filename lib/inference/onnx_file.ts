// Reads what loadModel needs from an ONNX file without a protobuf library: the ModelProto's ir_version,
// producer and metadata_props (field 14: key = 1, value = 2). The graph (field 7) is skipped by its length,
// so a truncated file is caught here with a message naming it, before ONNX Runtime sees it.
import { readFile } from 'node:fs/promises';
import { badFile } from './errors.js';

export interface OnnxFileInfo {
  irVersion: number;
  producerName: string;
  producerVersion: string;
  metadata: Record<string, string>;
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer, readonly path: string, readonly end = buf.length) {}
  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw badFile(`${this.path} is truncated or not an ONNX model (a varint runs past the end of the file): re-export or re-download it`);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
      if (shift > 63) throw badFile(`${this.path} is not an ONNX model (malformed varint at byte ${this.pos})`);
    }
  }
  bytes(): Buffer {
    const n = this.varint();
    if (this.pos + n > this.end) {
      throw badFile(`${this.path} is truncated: a field of ${n} bytes at byte ${this.pos} runs past the end of the file (${this.end} bytes); re-export or re-download it`);
    }
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw badFile(`${this.path} is not an ONNX model (wire type ${wire} at byte ${this.pos})`);
    if (this.pos > this.end) throw badFile(`${this.path} is truncated: re-export or re-download it`);
  }
}

export function parseOnnxInfo(buf: Buffer, path: string): OnnxFileInfo {
  const r = new Reader(buf, path);
  const info: OnnxFileInfo = { irVersion: 0, producerName: '', producerVersion: '', metadata: {} };
  let sawGraph = false;
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === 0) info.irVersion = r.varint();
    else if (field === 2 && wire === 2) info.producerName = r.bytes().toString('utf8');
    else if (field === 3 && wire === 2) info.producerVersion = r.bytes().toString('utf8');
    else if (field === 14 && wire === 2) {
      const entry = r.bytes();
      const e = new Reader(entry, path);
      let key = '';
      let value = '';
      while (e.pos < e.end) {
        const t = e.varint();
        if (t === (1 << 3 | 2)) key = e.bytes().toString('utf8');
        else if (t === (2 << 3 | 2)) value = e.bytes().toString('utf8');
        else e.skip(t & 7);
      }
      info.metadata[key] = value;
    } else {
      if (field === 7) sawGraph = true;
      r.skip(wire);
    }
  }
  if (!sawGraph || info.irVersion === 0) throw badFile(`${path} is not an ONNX model (no graph or IR version found)`);
  return info;
}

export async function readOnnxInfo(path: string): Promise<OnnxFileInfo> {
  return parseOnnxInfo(await readFile(path), path);
}
