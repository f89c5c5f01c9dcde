"""The QC report page's stylesheet and script (inlined into the one HTML file by ``damt.qc.html``).

The script draws the subject table from the JSON rows (sort, filter, column choice, ``#s-<i>``
links), and drives the montage (overlay opacity, click to enlarge). Montage planes are sized by
the CSS variable ``--tile``; orientation letters are text positioned on each plane's edges.
"""

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header .meta{opacity:.85;font-size:12px;margin-top:4px}nav{margin-top:6px;font-size:13px}nav a{color:#cfe3ff}
main{padding:8px 24px 40px}h2{border-bottom:2px solid #1f3b57;padding-bottom:2px;margin-top:28px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #ddd;border-radius:6px;
padding:10px 16px;min-width:110px}.card b{display:block;font-size:26px}.card.bad b{color:#b22}.card.warn b{color:#b70}
.warnbox{background:#fff4d6;border:1px solid #e0b84c;border-radius:6px;padding:8px 14px;margin:14px 0;max-width:70em}
.warnbox ul{margin:4px 0 0;padding-left:20px}
table{border-collapse:collapse;background:#fff;font-size:13px}th,td{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#eef2f6;position:sticky;top:0}
#subjects th{cursor:pointer;white-space:nowrap}#subjects th.asc:after{content:" \\25B2"}#subjects th.desc:after{content:" \\25BC"}
#subjects td{max-width:26em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
details{margin-top:8px}summary{cursor:pointer}.scroll{max-height:640px;overflow:auto;border:1px solid #ccc}
tr.failed td{background:#fdeaea}tr.flag td{background:#fff6d8}tr.target td{background:#d6ebff}
td.num{text-align:right;font-variant-numeric:tabular-nums}.controls{margin:8px 0;display:flex;gap:14px;align-items:center}
#colboxes{display:flex;flex-wrap:wrap;gap:2px 14px;margin:6px 0;font-size:12px}.colbtns{margin-top:6px}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plot{background:#fff;border:1px solid #ddd}
.plot .pt{font-weight:600;font-size:13px}.plot .pl,.plot .tk{font-size:11px;fill:#333}.plot .tk{text-anchor:middle}
.plot .box{fill:#c6dbef;stroke:#6b8fb5}.plot .med{stroke:#08306b;stroke-width:2}.plot .pt-ok{fill:#1f77b4;fill-opacity:.65}
.plot .hist{fill:#6baed6}.plot .axis{stroke:#555}
.montage{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}
figure.flag{border:2px solid #d62728}figure:target{outline:4px solid #1f77b4}
.planes{display:flex;gap:3px;cursor:zoom-in}
.plane{position:relative;width:var(--tile);height:var(--tile);background:#000;overflow:hidden}
.plane img{position:absolute;left:0;top:0;width:100%;height:100%;object-fit:contain}
.plane img.lab{opacity:var(--ov,.45)}.plane:hover img.lab{opacity:0}
.ol{position:absolute;color:#ffe14d;font:700 15px/1 system-ui,sans-serif;text-shadow:0 0 3px #000,0 0 2px #000}
.ol.l{left:5px;top:50%;transform:translateY(-50%)}.ol.r{right:5px;top:50%;transform:translateY(-50%)}
.ol.t{top:5px;left:50%;transform:translateX(-50%)}.ol.b{bottom:5px;left:50%;transform:translateX(-50%)}
.pn{position:absolute;left:5px;bottom:4px;color:#bbb;font-size:11px}
figcaption{font-size:12px;margin-top:4px;word-break:break-word;max-width:calc(3 * var(--tile))}
p.good{color:#276b27}p.bad{color:#b22}
#lightbox{position:fixed;inset:0;background:rgba(0,0,0,.94);z-index:10;display:flex;flex-direction:column;
align-items:center;justify-content:center;color:#eee;cursor:zoom-out}#lightbox[hidden]{display:none}
#lightbox .planes{--tile:min(32vw,80vh)}#lightbox figcaption{max-width:96vw;font-size:14px}#lightbox a{color:#9cf}
"""

JS = """
(function(){
const data=JSON.parse(document.getElementById('qc-data').textContent);
const cols=data.columns,mont=new Set(data.montage);
const rows=data.rows.map((a,i)=>{const r={_i:i};data.keys.forEach((k,j)=>{r[k]=a[j];});return r;});
const thead=document.querySelector('#subjects thead tr'),body=document.querySelector('#subjects tbody');
const q=document.getElementById('q'),st=document.getElementById('st'),fl=document.getElementById('fl'),
 info=document.getElementById('shown'),boxes=document.getElementById('colboxes'),ncols=document.getElementById('ncols');
const keyCols=()=>new Set(cols.filter(c=>c.key_column).map(c=>c.key));
let key=null,asc=true,pin=null,vis=keyCols();
const esc=s=>String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const show=v=>v===null||v===undefined?'':typeof v==='number'?(Number.isInteger(v)?v:+v.toPrecision(4)):
 typeof v==='boolean'?(v?'yes':''):v;
const empty=v=>v===null||v===undefined||v==='';
function head(){
 thead.innerHTML=cols.filter(c=>vis.has(c.key)).map(c=>'<th data-k="'+esc(c.key)+'" title="'+esc(c.doc)+'"'+
  (key===c.key?' class="'+(asc?'asc':'desc')+'"':'')+'>'+esc(c.label)+'</th>').join('');
 ncols.textContent=vis.size+' of '+cols.length;
}
function boxesDraw(){
 boxes.innerHTML=cols.map(c=>'<label title="'+esc(c.doc)+'"><input type="checkbox" data-k="'+esc(c.key)+'"'+
  (vis.has(c.key)?' checked':'')+'> '+esc(c.label)+'</label>').join('');
}
function cell(x,c){
 const raw=x[c.key],s=String(show(raw));let v=esc(s);
 if(c.key==='subject_id'&&mont.has(x._i))v='<a href="#m-'+x._i+'" title="show the montage">'+v+'</a>';
 return '<td'+(typeof raw==='number'?' class="num"':'')+(s.length>30?' title="'+esc(s)+'"':'')+'>'+v+'</td>';
}
function draw(){
 const t=q.value.toLowerCase(),shown=cols.filter(c=>vis.has(c.key));
 let r=pin!==null?[rows[pin]]:rows.filter(x=>(!st.value||x.status===st.value)&&(!fl.checked||x.flagged)&&
  (!t||cols.some(c=>String(show(x[c.key])).toLowerCase().includes(t))));
 if(key)r.sort((a,b)=>{const u=a[key],v=b[key];if(empty(u)&&empty(v))return 0;if(empty(u))return 1;
  if(empty(v))return -1;return (u<v?-1:u>v?1:0)*(asc?1:-1);});
 body.innerHTML=r.slice(0,data.limit).map(x=>'<tr id="s-'+x._i+'" class="'+esc(x.status)+(x.flagged?' flag':'')+
  (x._i===pin?' target':'')+'">'+shown.map(c=>cell(x,c)).join('')+'</tr>').join('');
 info.textContent=pin!==null?'showing the linked subject; change a filter to see all':
  'showing '+Math.min(r.length,data.limit)+' of '+r.length+' matching ('+rows.length+' subjects)';
}
thead.addEventListener('click',e=>{const th=e.target.closest('th');if(!th)return;const k=th.dataset.k;
 asc=key===k?!asc:true;key=k;head();draw();});
boxes.addEventListener('change',e=>{const k=e.target.dataset.k;if(e.target.checked)vis.add(k);else vis.delete(k);
 head();draw();});
document.getElementById('keycols').addEventListener('click',()=>{vis=keyCols();boxesDraw();head();draw();});
document.getElementById('allcols').addEventListener('click',()=>{vis=new Set(cols.map(c=>c.key));boxesDraw();head();draw();});
[q,st,fl].forEach(e=>e.addEventListener('input',()=>{pin=null;draw();}));
function follow(){
 const m=/^#s-(\\d+)$/.exec(location.hash);if(!m||!rows[+m[1]])return;
 pin=+m[1];draw();const tr=document.getElementById('s-'+pin);if(tr)tr.scrollIntoView({block:'center'});
}
window.addEventListener('hashchange',follow);
const mon=document.querySelector('.montage'),ov=document.getElementById('ov'),lb=document.getElementById('lightbox');
if(mon&&lb){
 ov.addEventListener('input',()=>{mon.style.setProperty('--ov',ov.value);lb.style.setProperty('--ov',ov.value);});
 mon.querySelectorAll('.planes').forEach(p=>p.addEventListener('click',()=>{
  const inner=lb.querySelector('.lb-inner');inner.innerHTML='';inner.appendChild(p.cloneNode(true));
  inner.appendChild(p.closest('figure').querySelector('figcaption').cloneNode(true));lb.hidden=false;}));
 lb.addEventListener('click',()=>{lb.hidden=true;});
 document.addEventListener('keydown',e=>{if(e.key==='Escape')lb.hidden=true;});
}
head();boxesDraw();draw();follow();
})();
"""
