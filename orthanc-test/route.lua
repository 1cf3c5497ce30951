-- Auto-routing for spinenode: forward each stable MR series of the 3D gradient-echo / VIBE
-- family to the node (DICOM modality "spinenode" in orthanc.json). The node applies the full
-- protocol rule itself (axial, post-contrast, 12 slices per phase ...) and records anything it
-- does not analyse, so this filter only keeps obviously unrelated series (CT, T2, the node's
-- own SEG/SR/key images) off the network.
--
-- The store goes through the REST route /modalities/<name>/store: on Debian's Orthanc 1.10.1
-- calling SendToModality() from OnStableSeries failed with "Unable to read attachment".

local function contains(text, words)
  text = string.lower(text or '')
  for _, word in ipairs(words) do
    if string.find(text, word, 1, true) then
      return true
    end
  end
  return false
end

local function isVibeFamily(t)
  if t['MRAcquisitionType'] == '3D' and contains(t['ScanningSequence'], {'gr'}) then
    return true
  end
  if contains(t['SequenceName'], {'fl3d', 'vibe', 'gre3d'}) then
    return true
  end
  return contains(t['SeriesDescription'], {'vibe', 'lava', 'thrive', 'fl3d', 'fame', 'quick3d'})
end

function OnStableSeries(seriesId, tags, metadata)
  if tags['Modality'] ~= 'MR' then
    return
  end
  local instances = ParseJson(RestApiGet('/series/' .. seriesId .. '/instances'))
  if #instances == 0 then
    return
  end
  local first = ParseJson(RestApiGet('/instances/' .. instances[1]['ID'] .. '/simplified-tags'))
  if not isVibeFamily(first) then
    print('spinenode routing: series ' .. seriesId .. ' is not VIBE-family, not forwarded')
    return
  end
  print('spinenode routing: forwarding series ' .. seriesId .. ' (' .. #instances .. ' instances)')
  RestApiPost('/modalities/spinenode/store', seriesId)
end
